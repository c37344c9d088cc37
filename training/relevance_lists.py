"""Training lists for a relevance cross-encoder: one query, its candidates, 0/1 labels (and teacher scores).

Sources (train splits only):
- WikiQA train: an answered question with the sentences of its article (<= `in_article`, every correct one
  kept: topical hard negatives) plus `random_negatives` sentences of other articles.
- WikiQA pooled: any train question (answered or not) with `candidates` of its BM25 top-`depth` over all train
  sentences, every correct sentence in the top-`depth` kept: what a search pipeline hands the reranker,
  cross-article topic matches included. Unanswered questions' lists teach through the teacher alone.
- InsuranceQA train: a question with its correct answers (<= `max_positives`) and `negatives` of its 200
  search-engine negatives, drawn from the first `negative_pool` (the pool is ordered by retrieval score).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from training import insuranceqa
from training.rerank_data import BM25Index, Question, load_wikiqa_train


@dataclass(frozen=True)
class RankList:
    source: str  # "wikiqa" / "insuranceqa": which max_length applies
    query: str
    docs: tuple[str, ...]
    labels: tuple[int, ...]
    teacher: tuple[float, ...] | None = None  # teacher scores of the docs, when the source has them


@dataclass(frozen=True)
class WikiQALists:
    in_article: int = 10
    random_negatives: int = 2

    def questions(self) -> list[Question]:
        return [q for q in load_wikiqa_train() if q.has_answer]

    def sample(self, q: Question, pool: list[str], rng: random.Random) -> RankList:
        idx = list(range(len(q.sentences)))
        pos = [i for i in idx if q.labels[i]]
        neg = [i for i in idx if not q.labels[i]]
        keep = pos + rng.sample(neg, min(len(neg), max(0, self.in_article - len(pos))))
        own = set(q.sentences)
        extra: list[str] = []
        while len(extra) < self.random_negatives:
            s = pool[rng.randrange(len(pool))]
            if s not in own:
                extra.append(s)
        docs = [q.sentences[i] for i in keep] + extra
        labels = [q.labels[i] for i in keep] + [0] * len(extra)
        return RankList("wikiqa", q.text, tuple(docs), tuple(labels))


@dataclass(frozen=True)
class PooledWikiQALists:
    candidates: int = 14
    depth: int = 100

    def questions(self, pool: list[str]) -> list[tuple[Question, np.ndarray]]:
        """Every train question with the pool indices of its BM25 top-`depth` (computed once, ~10 s)."""
        qs = load_wikiqa_train()
        top, _ = BM25Index(pool).search([q.text for q in qs], self.depth)
        return list(zip(qs, top, strict=True))

    def sample(self, item: tuple[Question, np.ndarray], pool: list[str], rng: random.Random) -> RankList:
        q, top = item
        correct = {s for s, label in zip(q.sentences, q.labels, strict=True) if label}
        pos = [i for i in top.tolist() if pool[i] in correct]
        neg = [i for i in top.tolist() if pool[i] not in correct]
        keep = pos + rng.sample(neg, min(len(neg), max(0, self.candidates - len(pos))))
        return RankList("wikiqa", q.text, tuple(pool[i] for i in keep), tuple(int(i in pos) for i in keep))


@dataclass(frozen=True)
class InsuranceQALists:
    negatives: int = 6
    negative_pool: int = 100
    max_positives: int = 2

    def questions(self) -> tuple[insuranceqa.InsuranceQuestion, ...]:
        return insuranceqa.load_split("train")

    def sample(self, q: insuranceqa.InsuranceQuestion, rng: random.Random) -> RankList:
        texts = insuranceqa.answer_texts()
        pos = rng.sample(q.answers, min(len(q.answers), self.max_positives))
        neg = rng.sample(q.negatives[: self.negative_pool], self.negatives)
        docs = [texts[a] for a in pos] + [texts[a] for a in neg]
        return RankList("insuranceqa", q.text, tuple(docs), (1,) * len(pos) + (0,) * len(neg))


class ListSampler:
    """Each step: `wikiqa_lists` WikiQA article lists, `pooled_lists` WikiQA pooled lists and `insuranceqa_lists`
    InsuranceQA lists, epoch-shuffled per source with a seeded RNG, so step k's lists depend only on (seed, k)
    and a resumed run sees the same data."""

    def __init__(self, wikiqa: WikiQALists, pooled: PooledWikiQALists, insurance: InsuranceQALists,
                 per_step: tuple[int, int, int], seed: int, insuranceqa_questions: int | None = None) -> None:
        self.pool = sorted({s for q in load_wikiqa_train() for s in q.sentences})
        # (salt, lists per step, items, sampler); the salts keep each source's order fixed as sources are added.
        self.sources: list[tuple[int, int, list, Callable[[object, random.Random], RankList]]] = [
            (0, per_step[0], wikiqa.questions(), lambda q, rng: wikiqa.sample(q, self.pool, rng)),
            (1, per_step[2], list(insurance.questions()[:insuranceqa_questions]), insurance.sample),
            (2, per_step[1], pooled.questions(self.pool) if per_step[1] else [],
             lambda item, rng: pooled.sample(item, self.pool, rng)),
        ]
        self.seed = seed

    def _order(self, n: int, epoch: int, salt: int) -> np.ndarray:
        return np.random.default_rng([self.seed, salt, epoch]).permutation(n)

    def step(self, k: int) -> list[RankList]:
        rng = random.Random(self.seed * 1_000_003 + k)
        out = []
        for salt, count, items, sample in self.sources:
            for j in range(count):
                pos = k * count + j
                out.append(sample(items[self._order(len(items), pos // len(items), salt)[pos % len(items)]], rng))
        return out
