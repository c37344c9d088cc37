"""InsuranceQA v1 (../shared/data/insuranceqa, read in place): questions with their correct answers and the
200 search-engine (SOLR) negatives each, as rerank_data.Question lists for training and evaluation.

Splits: "train" for training, "valid" for selection, "test" for evaluation only (shared/data/README.md).
Questions run in file order (ids "0", "1", ...), so "the first 500 test questions" is questions(...)[:500].

    >>> qs = questions("test", negatives=50)
    >>> len(qs), qs[0].text, sum(qs[0].labels), len(qs[0].sentences)
    (2000, 'What Happens When Term Life Insurance Is Paid Up?', 3, 53)
"""

from __future__ import annotations

import functools
import gzip
import json
import random
import re
from dataclasses import dataclass

from training.rerank_data import DATA_DIR, Question

INSURANCEQA_DIR = DATA_DIR / "insuranceqa"
SPLITS = ("train", "valid", "test")
_SPACES = re.compile(r"\s+")


def clean(text: str) -> str:
    """Collapse the runs of spaces (questions are full of double spaces) and strip."""
    return _SPACES.sub(" ", text).strip()


@dataclass(frozen=True)
class InsuranceQuestion:
    qid: str
    text: str
    domain: str
    answers: tuple[str, ...]  # ids of the correct answers
    negatives: tuple[str, ...]  # ids of the 200 retrieved negatives, in the file's (retrieval) order


@functools.cache
def answer_texts() -> dict[str, str]:
    """answer id -> English text, whitespace collapsed (27,413 answers)."""
    with gzip.open(INSURANCEQA_DIR / "answers.json.gz", "rt", encoding="utf-8") as f:
        return {aid: clean(a["en"]) for aid, a in json.load(f).items()}


@functools.cache
def load_split(split: str) -> tuple[InsuranceQuestion, ...]:
    if split not in SPLITS:
        raise ValueError(f"unknown InsuranceQA split {split!r}; use one of {SPLITS}")
    with gzip.open(INSURANCEQA_DIR / f"{split}.json.gz", "rt", encoding="utf-8") as f:
        raw = json.load(f)
    return tuple(
        InsuranceQuestion(
            qid=f"iqa-{split}-{qid}",
            text=clean(q["en"]),
            domain=q["domain"],
            answers=tuple(q["answers"]),
            negatives=tuple(q["negatives"]),
        )
        for qid, q in raw.items()
    )


def questions(split: str, negatives: int = 50, limit: int | None = None) -> list[Question]:
    """Each question with its correct answers first, then its first `negatives` negatives, labels 1 / 0."""
    texts = answer_texts()
    out = []
    for q in load_split(split)[:limit]:
        ids = list(q.answers) + [n for n in q.negatives[:negatives] if n not in q.answers]
        out.append(
            Question(
                qid=q.qid,
                text=q.text,
                sentences=[texts[i] for i in ids],
                labels=[1] * len(q.answers) + [0] * (len(ids) - len(q.answers)),
                doc_id=q.domain,
                sentence_ids=ids,
            )
        )
    return out


@dataclass(frozen=True)
class TrainLists:
    """Training lists from InsuranceQA train: a question with its correct answers (<= `max_positives`) and
    `negatives` of its search-engine negatives, drawn from the first `negative_pool` (ordered by retrieval score,
    so these are the hard ones)."""

    negatives: int = 6
    negative_pool: int = 100
    max_positives: int = 2

    def questions(self) -> tuple[InsuranceQuestion, ...]:
        return load_split("train")

    def sample(self, q: InsuranceQuestion, rng: random.Random) -> tuple[str, list[str], list[int]]:
        """(question, answers, 0/1 labels): the correct answers first."""
        texts = answer_texts()
        pos = rng.sample(q.answers, min(len(q.answers), self.max_positives))
        neg = rng.sample(q.negatives[: self.negative_pool], self.negatives)
        return q.text, [texts[a] for a in pos + neg], [1] * len(pos) + [0] * len(neg)
