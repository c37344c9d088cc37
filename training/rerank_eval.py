"""Evaluate a reranker directory through Scorer (the serving path) and write <model>/eval.json.

    python -m training.rerank_eval --model models/rerank-hash-nano [--backends onnx onnx-int8]

1. WikiQA test answer selection: MAP / MRR over the 243 questions with a correct answer, reranking each
   question's given candidates (the sentences of its Wikipedia summary).
2. Search pipeline: every WikiQA test sentence pooled into one corpus (deduplicated by SentenceID), each
   test question with a correct answer as a query, BM25 (bm25s) top-100, then reranked. nDCG@10 / MRR@10
   for BM25 alone, our model on each backend, and the MiniLM bi-encoder (cosine) on the same top-100.
3. InsuranceQA test (test split only, not with --smoke): each of the 2,000 questions' correct answers + its
   first 50 negatives; MAP / MRR / P@1 for each backend, side by side with BM25 (per-question and collection
   statistics) and all-MiniLM-L6-v2 cosine (training.relevance_eval).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from training.rerank_data import (
    CACHE_DIR,
    BM25Index,
    Question,
    average_precisions,
    load_wikiqa_tsv,
    map_by_type,
    map_mrr,
    minilm_embed,
    reciprocal_rank,
)

log = logging.getLogger("training.rerank_eval")
TOP_K = 100
BOOTSTRAP_RESAMPLES = 10_000


def bootstrap_ci95(per_question: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> list[float]:
    """95% percentile interval of the mean of per-question values, resampling the questions with replacement
    (for two systems, pass their paired per-question differences): how far the test set's few hundred
    questions let a MAP be trusted."""
    rng = np.random.default_rng(seed)
    means = per_question[rng.integers(0, len(per_question), size=(resamples, len(per_question)))].mean(axis=1)
    return [round(float(x), 4) for x in np.percentile(means, [2.5, 97.5])]


def ndcg_at(scores: np.ndarray, rel: np.ndarray, k: int, n_relevant: int) -> float:
    """Binary-gain nDCG@k; the ideal counts every relevant sentence in the corpus, not only the retrieved."""
    order = np.argsort(-scores, kind="stable")[:k]
    gains = rel[order] / np.log2(np.arange(2, len(order) + 2))
    ideal = (1.0 / np.log2(np.arange(2, min(n_relevant, k) + 2))).sum()
    return float(gains.sum() / ideal) if ideal > 0 else 0.0


def pooled_corpus(questions: list[Question]) -> tuple[list[str], dict[str, set[int]]]:
    """(corpus of unique test sentences, question id -> indices of its correct sentences)."""
    ids: dict[str, int] = {}
    corpus: list[str] = []
    qrels: dict[str, set[int]] = {}
    for q in questions:
        for sid, s, label in zip(q.sentence_ids, q.sentences, q.labels, strict=True):
            if sid not in ids:
                ids[sid] = len(corpus)
                corpus.append(s)
            if label:
                qrels.setdefault(q.qid, set()).add(ids[sid])
    return corpus, qrels


def per_query_ndcg_mrr(runs: list[tuple[np.ndarray, np.ndarray]], relevant: list[set[int]]) -> np.ndarray:
    """(queries, 2) nDCG@10 and MRR@10 of each query; runs[i] = (doc indices of the top-100, their scores)."""
    rows = []
    for (docs, scores), rel_set in zip(runs, relevant, strict=True):
        rel = np.array([d in rel_set for d in docs], dtype=np.float64)
        rows.append((ndcg_at(scores, rel, 10, len(rel_set)), reciprocal_rank(scores, rel, k=10)))
    return np.array(rows)


def pipeline_metrics(per_query: np.ndarray, baseline: np.ndarray | None = None) -> dict:
    """Mean nDCG@10 / MRR@10 with the nDCG's bootstrap interval and, against a baseline ranking of the same
    queries (BM25's own order), the interval of the paired nDCG@10 difference."""
    out: dict = {
        "ndcg@10": round(float(per_query[:, 0].mean()), 4),
        "ndcg@10_ci95": bootstrap_ci95(per_query[:, 0]),
        "mrr@10": round(float(per_query[:, 1].mean()), 4),
    }
    if baseline is not None:
        out["ndcg@10_minus_bm25_ci95"] = bootstrap_ci95(per_query[:, 0] - baseline[:, 0])
    return out


def evaluate(
    model_dir: Path, backends: tuple[str, ...] = ("onnx", "onnx-int8"), smoke: bool = False, split: str = "test"
) -> dict:
    """split="dev" is for choosing between models: no teacher columns, and eval.json is not written."""
    from app.scorer import Scorer

    model_dir = Path(model_dir)
    all_qs = load_wikiqa_tsv(split)
    if smoke:
        all_qs = all_qs[:30]
    answered = [q for q in all_qs if q.has_answer]
    corpus, qrels = pooled_corpus(all_qs)
    queries = [q for q in answered if q.qid in qrels]

    t0 = time.time()
    bm25 = BM25Index(corpus)
    docs, bm25_scores = bm25.search([q.text for q in queries], TOP_K)
    relevant = [qrels[q.qid] for q in queries]
    bm25_per_query = per_query_ndcg_mrr(list(zip(docs, bm25_scores, strict=True)), relevant)
    recall = np.mean([len(set(d.tolist()) & r) / len(r) for d, r in zip(docs, relevant, strict=True)])
    result: dict = {
        "model": model_dir.name,
        "split": split,
        "bootstrap_resamples": BOOTSTRAP_RESAMPLES,  # of every *_ci95 interval below
        "wikiqa": {"questions": len(answered)},
        "pooled_bm25_top100": {
            "corpus_sentences": len(corpus),
            "queries": len(queries),
            "bm25_recall@100": round(float(recall), 4),
            "bm25": pipeline_metrics(bm25_per_query),
        },
    }
    aps: dict[str, np.ndarray] = {}  # per-question AP of each system, for paired confidence intervals
    if split == "test":
        # The MiniLM bi-encoder teacher, for reference: cosine on the given candidates and on the same top-100.
        tag = "-smoke" if smoke else ""
        q_emb = minilm_embed([q.text for q in answered], "test-q" + tag, CACHE_DIR)
        c_emb = minilm_embed(corpus, "test-corpus" + tag, CACHE_DIR)
        qpos = {q.qid: i for i, q in enumerate(answered)}
        sid_index = {sid: i for i, sid in enumerate(_sentence_ids(all_qs))}
        cos = [c_emb[[sid_index[s] for s in q.sentence_ids]] @ q_emb[qpos[q.qid]] for q in answered]
        m, r = map_mrr(answered, cos)
        by_type = map_by_type(answered, cos)
        aps["minilm_cosine"] = average_precisions(answered, cos)
        result["wikiqa"]["minilm_cosine"] = {
            "map": round(m, 4),
            "map_ci95": bootstrap_ci95(aps["minilm_cosine"]),
            "mrr": round(r, 4),
            "by_type": by_type,
        }
        minilm_runs = [(d, c_emb[d] @ q_emb[qpos[q.qid]]) for d, q in zip(docs, queries, strict=True)]
        result["pooled_bm25_top100"]["minilm_rerank"] = pipeline_metrics(
            per_query_ndcg_mrr(minilm_runs, relevant), bm25_per_query
        )

    for backend in backends:
        scorer = Scorer.load(model_dir, backend, threads=1)  # type: ignore[arg-type]
        t = time.time()
        pairs = [(q.text, s) for q in answered for s in q.sentences]
        flat = scorer.score(pairs, raw=True, truncation="only_second", batch_size=64)
        per_question = _split(flat, [len(q.sentences) for q in answered])
        m, r = map_mrr(answered, per_question)
        pairs_per_s = round(len(pairs) / (time.time() - t))
        aps[backend] = average_precisions(answered, per_question)
        result["wikiqa"][backend] = {
            "map": round(m, 4),
            "map_ci95": bootstrap_ci95(aps[backend]),
            "mrr": round(r, 4),
            "pairs_per_s": pairs_per_s,
            "by_type": map_by_type(answered, per_question),
        }
        for other, key in (("minilm_cosine", "map_minus_minilm_ci95"), ("onnx", "map_minus_fp32_ci95")):
            if other in aps and other != backend:
                result["wikiqa"][backend][key] = bootstrap_ci95(aps[backend] - aps[other])
        t = time.time()
        pairs = [(q.text, corpus[i]) for d, q in zip(docs, queries, strict=True) for i in d]
        flat = scorer.score(pairs, raw=True, truncation="only_second", batch_size=64)
        runs = list(zip(docs, _split(flat, [len(d) for d in docs]), strict=True))
        metrics = pipeline_metrics(per_query_ndcg_mrr(runs, relevant), bm25_per_query)
        metrics["pairs_per_s"] = round(len(pairs) / (time.time() - t))
        result["pooled_bm25_top100"][f"rerank_{backend}"] = metrics
        log.info("%s: %s | %s", backend, result["wikiqa"][backend], metrics)
    if split == "test" and not smoke:
        result["insuranceqa"] = insuranceqa_test(model_dir, backends)
    result["eval_seconds"] = round(time.time() - t0, 1)
    if split == "test":
        (model_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def insuranceqa_test(model_dir: Path, backends: tuple[str, ...]) -> dict:
    """InsuranceQA test, all 2,000 questions: the model on each backend beside BM25 and MiniLM cosine, with MAP's
    bootstrap interval and the paired interval of its difference to MiniLM's."""
    from training import insuranceqa
    from training.relevance_eval import bm25_scores, minilm_scores, model_scores, ranking_metrics

    qs = insuranceqa.questions("test", 50)
    out: dict = {"questions": len(qs), "pairs": sum(len(q.sentences) for q in qs),
                 "bm25": ranking_metrics(qs, bm25_scores(qs, collection=False)),
                 "bm25_collection_idf": ranking_metrics(qs, bm25_scores(qs, collection=True))}
    minilm = minilm_scores(qs, "insuranceqa-test-all")
    out["minilm_cosine"] = {**ranking_metrics(qs, minilm), "map_ci95": bootstrap_ci95(average_precisions(qs, minilm))}
    for backend in backends:
        ours = model_scores(model_dir, qs, backend)
        aps = average_precisions(qs, ours)
        out[backend] = {**ranking_metrics(qs, ours), "map_ci95": bootstrap_ci95(aps),
                        "map_minus_minilm_ci95": bootstrap_ci95(aps - average_precisions(qs, minilm))}
        log.info("InsuranceQA test %s: %s", backend, out[backend])
    return out


def _split(flat: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(flat, np.cumsum(sizes)[:-1])


def _sentence_ids(questions: list[Question]) -> list[str]:
    seen: dict[str, None] = {}
    for q in questions:
        for sid in q.sentence_ids:
            seen.setdefault(sid)
    return list(seen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--backends", nargs="+", default=["onnx", "onnx-int8"])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--split", choices=["test", "dev"], default="test", help="dev: model selection, no eval.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(json.dumps(evaluate(args.model, tuple(args.backends), args.smoke, args.split), indent=2))


if __name__ == "__main__":
    main()
