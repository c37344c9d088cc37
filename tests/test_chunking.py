"""app.chunking: window arithmetic against hand-built windows, aggregation, and the Chunker on the shipped
model's tokenizer (number words are one token each, so windows can be checked by reading them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.chunking import (
    SPECIAL_TOKENS,
    Chunker,
    aggregate,
    char_span,
    default_overlap,
    document_budget,
    plan_windows,
    query_budget,
)
from app.errors import InvalidInput


@pytest.mark.parametrize(
    ("n", "size", "overlap", "max_chunks", "expected"),
    [
        (0, 4, 1, 10, [(0, 0)]),
        (4, 4, 1, 10, [(0, 4)]),
        (5, 4, 1, 10, [(0, 4), (1, 5)]),  # the last window moves back to stay full length
        (10, 4, 1, 10, [(0, 4), (3, 7), (6, 10)]),
        (11, 4, 1, 10, [(0, 4), (3, 7), (6, 10), (7, 11)]),
        (12, 4, 0, 10, [(0, 4), (4, 8), (8, 12)]),
        (100, 10, 2, 3, [(0, 10), (8, 18), (16, 26)]),  # capped: the rest is not scored
        (30, 12, 3, 10, [(0, 12), (9, 21), (18, 30)]),
    ],
)
def test_plan_windows_hand_built(
    n: int, size: int, overlap: int, max_chunks: int, expected: list[tuple[int, int]]
) -> None:
    assert plan_windows(n, size, overlap, max_chunks) == expected


def test_windows_cover_every_token_with_the_overlap() -> None:
    for n in range(1, 60):
        windows = plan_windows(n, 8, 2, 1000)
        covered = set().union(*(range(a, b) for a, b in windows))
        assert covered == set(range(n))
        assert all(b - a == min(8, n) for a, b in windows)
        assert all(a2 - a1 <= 6 for (a1, _), (a2, _) in zip(windows, windows[1:], strict=False))


@pytest.mark.parametrize(("size", "overlap", "chunks"), [(0, 0, 1), (4, 4, 1), (4, -1, 1), (4, 1, 0)])
def test_plan_windows_rejects_bad_arguments(size: int, overlap: int, chunks: int) -> None:
    with pytest.raises(ValueError):
        plan_windows(10, size, overlap, chunks)


def test_budgets() -> None:
    assert query_budget(128) == (128 - SPECIAL_TOKENS) // 2 == 62
    assert document_budget(5, 128) == 128 - 3 - 5
    assert document_budget(500, 128) == 128 - 3 - 62  # a long query is capped, never the document away
    assert default_overlap(120) == 30


def test_char_span() -> None:
    offsets = [(0, 3), (4, 7), (8, 11), (12, 15)]
    assert char_span(offsets, (1, 3)) == (4, 11)
    assert char_span(offsets, (0, 0)) == (0, 0)


def test_aggregate_max_mean_first() -> None:
    scores = [0.1, 0.9, 0.5, 0.3, 0.7]
    owners = [0, 0, 1, 2, 2]
    assert aggregate(scores, owners, 3, "max").tolist() == [0.9, 0.5, 0.7]
    np.testing.assert_allclose(aggregate(scores, owners, 3, "mean"), [0.5, 0.5, 0.5])
    assert aggregate(scores, owners, 3, "first").tolist() == [0.1, 0.5, 0.3]
    assert aggregate([], [], 0, "max").tolist() == []
    with pytest.raises(InvalidInput):
        aggregate(scores, owners, 3, "median")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        aggregate([0.1], [1], 2, "max")  # document 0 has no chunk


# ---- Chunker on the real tokenizer ----

NUMBERS = [str(i) for i in range(100, 130)]  # "100" .. "129": one token each in the BERT vocabulary


@pytest.fixture(scope="module")
def chunker(sts_model_dir: Path) -> Chunker:
    # max_length 16 with a one-token query: windows of 16 - 3 - 1 = 12 tokens, overlap 3, stride 9.
    return Chunker.from_dir(sts_model_dir, max_length=16)


def test_split_matches_hand_built_windows(chunker: Chunker) -> None:
    doc = " ".join(NUMBERS)
    plan = chunker.split("what", [doc, "short doc"], max_chunks=10)
    expected = [" ".join(NUMBERS[a:b]) for a, b in [(0, 12), (9, 21), (18, 30)]]
    assert plan.pairs == [("what", t) for t in expected] + [("what", "short doc")]
    assert plan.owners == [0, 0, 0, 1]
    assert plan.chunks_per_doc == [3, 1]
    assert plan.truncated == [False, False]
    assert plan.chunked_docs == 1


def test_split_caps_chunks_and_reports_the_cut(chunker: Chunker) -> None:
    plan = chunker.split("what", [" ".join(NUMBERS)], max_chunks=2)
    assert [p[1] for p in plan.pairs] == [" ".join(NUMBERS[0:12]), " ".join(NUMBERS[9:21])]
    assert plan.truncated == [True]


def test_split_caps_a_long_query(chunker: Chunker) -> None:
    query = " ".join(NUMBERS[:20])
    plan = chunker.split(query, [" ".join(NUMBERS)], max_chunks=10)
    kept = query_budget(16)  # 6 query tokens, so windows of 16 - 3 - 6 = 7
    assert all(q == " ".join(NUMBERS[:kept]) for q, _ in plan.pairs)
    assert plan.pairs[0][1] == " ".join(NUMBERS[:7])
    assert plan.truncated == [True]


def test_truncate_documents_and_keep_tails(chunker: Chunker) -> None:
    doc = " ".join(NUMBERS)
    assert chunker.truncate_documents([doc, "short"], 5) == [" ".join(NUMBERS[:5]), "short"]
    # Left truncation keeps the last 16 - 3 - 1 = 12 tokens of the second text.
    assert chunker.keep_tails([("what", doc), ("what", "short")]) == [" ".join(NUMBERS[-12:]), "short"]


def test_keep_tails_leaves_room_for_the_whole_first_text(chunker: Chunker) -> None:
    doc = " ".join(NUMBERS)
    ten = " ".join(NUMBERS[:10])  # 16 - 3 - 10 = 3 tokens left for the second text
    assert chunker.keep_tails([(ten, doc)]) == [" ".join(NUMBERS[-3:])]
    fourteen = " ".join(NUMBERS[:14])  # no room at all: left for the tokenizer to refuse
    assert chunker.keep_tails([(fourteen, doc)]) == [doc]
