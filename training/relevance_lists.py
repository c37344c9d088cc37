"""Training lists for a relevance cross-encoder: one query, its candidates, 0/1 labels (and teacher scores).

Sources (train splits only):
- WikiQA train: an answered question with the sentences of its article (<= `in_article`, every correct one
  kept: topical hard negatives) plus `random_negatives` sentences of other articles.
- InsuranceQA train: a question with its correct answers (<= `max_positives`) and `negatives` of its 200
  search-engine negatives, drawn from the first `negative_pool` (the pool is ordered by retrieval score).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from training import insuranceqa
from training.rerank_data import Question, load_wikiqa_train


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
    """Each step: `wikiqa_lists` WikiQA lists and `insuranceqa_lists` InsuranceQA lists, epoch-shuffled per
    source with a seeded RNG, so step k's lists depend only on (seed, k) and a resumed run sees the same data."""

    def __init__(self, wikiqa: WikiQALists, insurance: InsuranceQALists, wikiqa_lists: int, insuranceqa_lists: int,
                 seed: int, insuranceqa_questions: int | None = None) -> None:
        self.wikiqa, self.insurance = wikiqa, insurance
        self.wq = wikiqa.questions()
        self.iq = insurance.questions()[:insuranceqa_questions]
        self.pool = sorted({s for q in load_wikiqa_train() for s in q.sentences})
        self.per_step = (wikiqa_lists, insuranceqa_lists)
        self.seed = seed

    def _order(self, n: int, epoch: int, salt: int) -> np.ndarray:
        return np.random.default_rng([self.seed, salt, epoch]).permutation(n)

    def step(self, k: int) -> list[RankList]:
        rng = random.Random(self.seed * 1_000_003 + k)
        out = []
        for salt, (count, items) in enumerate(((self.per_step[0], self.wq), (self.per_step[1], self.iq))):
            for j in range(count):
                pos = k * count + j
                item = items[self._order(len(items), pos // len(items), salt)[pos % len(items)]]
                if salt == 0:
                    out.append(self.wikiqa.sample(item, self.pool, rng))  # type: ignore[arg-type]
                else:
                    out.append(self.insurance.sample(item, rng))  # type: ignore[arg-type]
        return out
