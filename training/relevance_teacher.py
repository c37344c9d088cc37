"""SPLADE-tiny teacher scores for every (query, candidate) pair the relevance lists can draw, from cached encodings.

The texts are the train splits' queries and candidates (WikiQA train questions and sentences, InsuranceQA train
questions and all answers). Each text list is encoded in `SHARDS` shards cached separately, so two processes
(one per core) can fill the cache side by side before training:

    python -m training.relevance_teacher --shard 0 & python -m training.relevance_teacher --shard 1; wait

A trainer then builds `TeacherScores()` (reads the shards; encodes any missing one itself) and asks
`scores(source, query, docs)`.
"""

from __future__ import annotations

import argparse
import functools
import logging
import time

import numpy as np
import scipy.sparse as sp

from training import insuranceqa
from training.rerank_data import load_wikiqa_train
from training.splade_teacher import SpladeTiny

log = logging.getLogger("training.relevance_teacher")
SHARDS = 2


@functools.cache
def text_lists() -> dict[str, list[str]]:
    """The sorted distinct texts per (source, role): every text a training list can contain."""
    wq = load_wikiqa_train()
    iq = insuranceqa.load_split("train")
    return {
        "wikiqa-queries": sorted({q.text for q in wq}),
        "wikiqa-docs": sorted({s for q in wq for s in q.sentences}),
        "insuranceqa-queries": sorted({q.text for q in iq}),
        "insuranceqa-docs": sorted(set(insuranceqa.answer_texts().values())),
    }


def _shard(texts: list[str], shard: int) -> list[str]:
    return texts[shard::SHARDS]


def encode_shard(teacher: SpladeTiny, name: str, shard: int) -> sp.csr_matrix:
    return teacher.encode(_shard(text_lists()[name], shard), f"{name}-shard{shard}of{SHARDS}")


def encode(teacher: SpladeTiny, name: str) -> tuple[sp.csr_matrix, dict[str, int]]:
    """All of a text list's representations (shards re-interleaved) and text -> row."""
    texts = text_lists()[name]
    rows = [None] * len(texts)
    for shard in range(SHARDS):
        block = encode_shard(teacher, name, shard)
        for j, i in enumerate(range(shard, len(texts), SHARDS)):
            rows[i] = block[j]
    return sp.vstack(rows, format="csr"), {t: i for i, t in enumerate(texts)}


class TeacherScores:
    """SPLADE-tiny dot products of a query and its candidates, for the "wikiqa" and "insuranceqa" sources."""

    def __init__(self, teacher: SpladeTiny | None = None) -> None:
        teacher = teacher or SpladeTiny()
        self._reps = {
            source: (encode(teacher, f"{source}-queries"), encode(teacher, f"{source}-docs"))
            for source in ("wikiqa", "insuranceqa")
        }

    def scores(self, source: str, query: str, docs: tuple[str, ...]) -> np.ndarray:
        (q_reps, q_row), (d_reps, d_row) = self._reps[source]
        d = d_reps[[d_row[x] for x in docs]]
        return np.asarray((d @ q_reps[q_row[query]].T).todense(), dtype=np.float32).ravel()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shard", type=int, choices=range(SHARDS), required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    teacher = SpladeTiny()
    for name, texts in text_lists().items():
        t0 = time.time()
        encode_shard(teacher, name, args.shard)
        log.info("%s shard %d: %d texts ready in %.0f s", name, args.shard, len(_shard(texts, args.shard)),
                 time.time() - t0)


if __name__ == "__main__":
    main()
