"""Relevance evaluation beyond WikiQA: InsuranceQA answer selection, side by side with BM25 and SPLADE-tiny, and the
student's agreement with the SPLADE-tiny teacher.

    python -m training.relevance_eval --model training/runs/splade-init/model [--split test] [--questions 500]

InsuranceQA protocol (the issue's): each question's correct answers + its first 50 negatives, MAP / MRR / P@1
over all 2,000 questions of the split (or the first --questions). BM25 (bm25s) indexes each question's
candidates alone (as the issue measured it) and, as a second row, all 27,413 answers; SPLADE-tiny is the dot
product of its sparse representations.
WikiQA test / dev and the pooled BM25 top-100 pipeline are training.rerank_eval's (which imports this module).
Agreement: per question, Spearman between the model's and the teacher's scores of the candidates (mean over
questions) and how often both put the same candidate first.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from training import insuranceqa
from training.rerank_data import Question, load_wikiqa_tsv, map_mrr

log = logging.getLogger("training.relevance_eval")


def ranking_metrics(questions: list[Question], scores: list[np.ndarray]) -> dict[str, float]:
    m, r = map_mrr(questions, scores)
    p1 = np.mean([np.asarray(q.labels)[np.argmax(s)] for q, s in zip(questions, scores, strict=True)])
    return {"map": round(m, 4), "mrr": round(r, 4), "p@1": round(float(p1), 4)}


def agreement(a: list[np.ndarray], b: list[np.ndarray]) -> dict[str, float]:
    rhos = [spearmanr(x, y).statistic for x, y in zip(a, b, strict=True) if np.ptp(x) > 0 and np.ptp(y) > 0]
    top = np.mean([np.argmax(x) == np.argmax(y) for x, y in zip(a, b, strict=True)])
    return {"mean_spearman": round(float(np.nanmean(rhos)), 4), "same_top1": round(float(top), 4)}


def model_scores(model_dir: Path, questions: list[Question], backend: str = "onnx") -> list[np.ndarray]:
    from app.scorer import Scorer

    scorer = Scorer.load(model_dir, backend, threads=1)  # type: ignore[arg-type]
    flat = scorer.score([(q.text, s) for q in questions for s in q.sentences], raw=True,
                        truncation="only_second", batch_size=64)
    return np.split(flat, np.cumsum([len(q.sentences) for q in questions])[:-1])


def bm25_scores(questions: list[Question], collection: bool) -> list[np.ndarray]:
    """BM25 (bm25s, English stopwords) of each question's candidates. collection=False indexes each question's
    candidates on their own (the issue's 0.2597 on the first 500 test questions); True indexes all 27,413 answers
    once, so document frequencies are the collection's."""
    import bm25s

    def index(texts: list[str]) -> bm25s.BM25:
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        return retriever

    def tokens(text: str) -> list[str]:
        return bm25s.tokenize([text], stopwords="en", show_progress=False, return_ids=False)[0]

    if not collection:
        return [np.asarray(index(q.sentences).get_scores(tokens(q.text)), dtype=np.float32) for q in questions]
    texts = insuranceqa.answer_texts()
    where = {a: i for i, a in enumerate(texts)}
    retriever = index(list(texts.values()))
    return [np.asarray(retriever.get_scores(tokens(q.text))[[where[a] for a in q.sentence_ids]], dtype=np.float32)
            for q in questions]


def splade_scores(questions: list[Question], kind: str) -> list[np.ndarray]:
    from training.splade_teacher import SpladeTiny

    return SpladeTiny().score_lists([q.text for q in questions], [q.sentences for q in questions], kind)


def minilm_scores(questions: list[Question], tag: str) -> list[np.ndarray]:
    """all-MiniLM-L6-v2 cosine (training.rerank_data's cached embeddings: 128 tokens per text)."""
    from training.rerank_data import minilm_embed

    distinct = list(dict.fromkeys(s for q in questions for s in q.sentences))
    where = {s: i for i, s in enumerate(distinct)}
    qe, de = minilm_embed([q.text for q in questions], f"{tag}-q"), minilm_embed(distinct, f"{tag}-docs")
    return [de[[where[s] for s in q.sentences]] @ qe[i] for i, q in enumerate(questions)]


def insuranceqa_report(model_dir: Path | None, split: str, limit: int | None, teacher: bool, minilm: bool) -> dict:
    qs = insuranceqa.questions(split, 50, limit)
    tag = f"insuranceqa-{split}-{limit or 'all'}"
    out: dict = {"questions": len(qs), "pairs": sum(len(q.sentences) for q in qs)}
    t = time.time()
    out["bm25"] = ranking_metrics(qs, bm25_scores(qs, collection=False))
    out["bm25_collection_idf"] = ranking_metrics(qs, bm25_scores(qs, collection=True))
    log.info("%s BM25 %s / %s (%.0f s)", tag, out["bm25"], out["bm25_collection_idf"], time.time() - t)
    splade = None
    if teacher:
        t = time.time()
        splade = splade_scores(qs, tag)
        out["splade_tiny"] = ranking_metrics(qs, splade)
        log.info("%s SPLADE-tiny %s (%.0f s)", tag, out["splade_tiny"], time.time() - t)
    if minilm:
        t = time.time()
        out["minilm_cosine"] = ranking_metrics(qs, minilm_scores(qs, tag))
        log.info("%s MiniLM %s (%.0f s)", tag, out["minilm_cosine"], time.time() - t)
    if model_dir is not None:
        t = time.time()
        ours = model_scores(model_dir, qs)
        out["model"] = ranking_metrics(qs, ours)
        out["model"]["seconds"] = round(time.time() - t)
        if splade is not None:
            out["model"]["agreement_with_splade_tiny"] = agreement(ours, splade)
        log.info("%s model %s", tag, out["model"])
    return out


def wikiqa_agreement(model_dir: Path, split: str) -> dict:
    qs = [q for q in load_wikiqa_tsv(split) if q.has_answer]
    return agreement(model_scores(model_dir, qs), splade_scores(qs, f"wikiqa-{split}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="a model directory (omit: baselines only)")
    ap.add_argument("--split", choices=["valid", "test"], default="test")
    ap.add_argument("--questions", type=int, help="the first N questions of the split (default: all 2,000)")
    ap.add_argument("--no-teacher", action="store_true", help="skip SPLADE-tiny on InsuranceQA (~19k long answers)")
    ap.add_argument("--minilm", action="store_true", help="add all-MiniLM-L6-v2 cosine (slow: ~19k long answers)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result: dict = {"model": str(args.model) if args.model else None,
                    "insuranceqa": insuranceqa_report(
        args.model, args.split, args.questions, not args.no_teacher, args.minilm
    )}
    if args.model is not None:  # SPLADE-tiny on WikiQA is cheap (~3,400 short texts): its agreement always
        result["wikiqa_agreement_with_splade_tiny"] = {s: wikiqa_agreement(args.model, s) for s in ("dev", "test")}
    text = json.dumps(result, indent=2)
    if args.model is not None:
        (args.model / f"relevance_eval_{args.split}.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
