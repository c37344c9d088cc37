"""Long documents: overlapping token windows of a document, each scored with the whole query, then
aggregated into one score per document (max by default, as Cohere does; mean and first selectable).

The window arithmetic is pure functions over token counts and offsets, so it can be checked against
hand-built windows; `Chunker` applies it to text with the model's own tokenizer. A chunk goes back to
the scorer as the exact substring of the document that its tokens came from, so the one scoring path
(`[CLS] query [SEP] chunk [SEP]`, document-side truncation) scores it like any other pair.

    >>> plan_windows(10, size=4, overlap=1, max_chunks=10)
    [(0, 4), (3, 7), (6, 10)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tokenizers import Tokenizer

from app.errors import InvalidInput, ModelLoadError
from app.modeling.tokenizer import configured

Aggregation = Literal["max", "mean", "first"]
AGGREGATIONS: tuple[Aggregation, ...] = ("max", "mean", "first")
# [CLS] query [SEP] document [SEP]
SPECIAL_TOKENS = 3
# Cohere's default cap on chunks per document (v1 `max_chunks_per_doc`).
DEFAULT_MAX_CHUNKS = 10


def query_budget(max_length: int) -> int:
    """Query tokens kept in a pair: half of what the specials leave, as Cohere cut queries to 256 of 510,
    so a long query can never squeeze the document out of every window."""
    return max(1, (max_length - SPECIAL_TOKENS) // 2)


def document_budget(query_tokens: int, max_length: int) -> int:
    """Document tokens that fit in one window next to the (capped) query."""
    return max_length - SPECIAL_TOKENS - min(query_tokens, query_budget(max_length))


def default_overlap(size: int) -> int:
    """Tokens shared by neighbouring windows: a quarter of the window, so a sentence cut at one
    window's edge is whole in the next."""
    return size // 4


def plan_windows(n_tokens: int, size: int, overlap: int, max_chunks: int) -> list[tuple[int, int]]:
    """[start, end) token windows of at most `size` covering n_tokens, each starting size - overlap
    after the previous one; the last is moved back to end exactly at n_tokens so it is full length.
    At most the first max_chunks windows are returned (the rest of the document is not scored).

    >>> plan_windows(3, size=4, overlap=1, max_chunks=10)
    [(0, 3)]
    >>> plan_windows(9, size=4, overlap=0, max_chunks=2)
    [(0, 4), (4, 8)]
    """
    if size < 1:
        raise ValueError(f"window size must be positive, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, {size}), got {overlap}")
    if max_chunks < 1:
        raise ValueError(f"max_chunks must be positive, got {max_chunks}")
    if n_tokens <= size:
        return [(0, n_tokens)]
    stride = size - overlap
    windows: list[tuple[int, int]] = []
    start = 0
    while len(windows) < max_chunks:
        if start + size >= n_tokens:
            windows.append((n_tokens - size, n_tokens))
            break
        windows.append((start, start + size))
        start += stride
    return windows


def char_span(offsets: Sequence[tuple[int, int]], window: tuple[int, int]) -> tuple[int, int]:
    """Character [start, end) of the tokens in `window`, from the tokenizer's per-token offsets."""
    start, end = window
    if start >= end:
        return (0, 0)
    return (offsets[start][0], offsets[end - 1][1])


def aggregate(scores: Sequence[float], owners: Sequence[int], n_docs: int, how: Aggregation = "max") -> np.ndarray:
    """One score per document (n_docs,) from the scores of its chunks; owners[i] is chunk i's document.

    Chunks of one document must be listed in document order for "first" to mean the opening window.

    >>> aggregate([0.2, 0.9, 0.5], [0, 0, 1], 2, "max").tolist()
    [0.9, 0.5]
    """
    if how not in AGGREGATIONS:
        raise InvalidInput(f"unknown chunk aggregation {how!r}; use one of {', '.join(AGGREGATIONS)}")
    values = np.asarray(scores, dtype=np.float64)
    idx = np.asarray(owners, dtype=np.int64)
    counts = np.bincount(idx, minlength=n_docs)
    if values.shape != idx.shape or (counts == 0).any():
        raise ValueError("every document needs at least one chunk score")
    if how == "max":
        out = np.full(n_docs, -np.inf)
        np.maximum.at(out, idx, values)
        return out
    if how == "mean":
        return np.bincount(idx, weights=values, minlength=n_docs) / counts
    first = np.full(n_docs, -1, dtype=np.int64)
    for i in range(len(idx) - 1, -1, -1):  # walk backwards so the earliest chunk wins
        first[idx[i]] = i
    return values[first]


@dataclass(frozen=True)
class ChunkedPairs:
    """Pairs to score for N documents: pairs[i] belongs to document owners[i]."""

    pairs: list[tuple[str, str]]
    owners: list[int]
    chunks_per_doc: list[int]
    # Per document: part of it (or of the query) was not scored, because max_chunks windows did not
    # reach its end or the query was over query_budget.
    truncated: list[bool]

    @property
    def n_chunks(self) -> int:
        return len(self.pairs)

    @property
    def chunked_docs(self) -> int:
        """Documents that needed more than one window."""
        return sum(1 for n in self.chunks_per_doc if n > 1)


class Chunker:
    """Splits a query and its documents into (query, chunk) pairs that fit the model's max_length."""

    def __init__(self, tokenizer: Tokenizer, max_length: int) -> None:
        if max_length <= SPECIAL_TOKENS + 1:
            raise ValueError(f"max_length {max_length} leaves no room for a query and a document")
        self.max_length = max_length
        self._tok = configured(tokenizer.to_str())  # shared with the pair tokenizer of the same vocabulary

    @classmethod
    def from_dir(cls, model_dir: Path, max_length: int) -> Chunker:
        path = Path(model_dir) / "tokenizer.json"
        if not path.is_file():
            raise ModelLoadError(f"{path}: missing tokenizer.json")
        return cls(Tokenizer.from_file(str(path)), max_length)

    def _offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return [list(e.offsets) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def cap_query(self, query: str) -> tuple[str, int]:
        """The query cut to query_budget tokens (a no-op for any normal query) and its token count."""
        offsets = self._offsets([query])[0]
        keep = min(len(offsets), query_budget(self.max_length))
        return query[: char_span(offsets, (0, keep))[1]] if keep < len(offsets) else query, keep

    def truncate_documents(self, documents: Sequence[str], max_tokens: int) -> list[str]:
        """Each document cut to its first max_tokens tokens (Cohere v2 `max_tokens_per_doc`)."""
        out = []
        for doc, offsets in zip(documents, self._offsets(documents), strict=True):
            out.append(doc if len(offsets) <= max_tokens else doc[: char_span(offsets, (0, max_tokens))[1]])
        return out

    def keep_tails(self, pairs: Sequence[tuple[str, str]]) -> list[str]:
        """Each pair's second text cut from the left to what fits next to its whole first text (TEI's
        truncation_direction=left); texts that fit, or whose first text leaves no room, are unchanged."""
        firsts = self._offsets([a for a, _ in pairs])
        out = []
        for first, (_, text), offsets in zip(firsts, pairs, self._offsets([b for _, b in pairs]), strict=True):
            budget = self.max_length - SPECIAL_TOKENS - len(first)
            n = len(offsets)
            out.append(text if n <= budget or budget < 1 else text[char_span(offsets, (n - budget, n))[0] :])
        return out

    def split(
        self, query: str, documents: Sequence[str], max_chunks: int = DEFAULT_MAX_CHUNKS, overlap: int | None = None
    ) -> ChunkedPairs:
        """(query, window) pairs for every document; a document that fits is one pair of itself."""
        full_query = query
        query, q_tokens = self.cap_query(query)
        query_cut = query != full_query
        size = document_budget(q_tokens, self.max_length)
        step_overlap = default_overlap(size) if overlap is None else min(overlap, size - 1)
        pairs: list[tuple[str, str]] = []
        owners: list[int] = []
        per_doc: list[int] = []
        truncated: list[bool] = []
        for i, (doc, offsets) in enumerate(zip(documents, self._offsets(documents), strict=True)):
            windows = plan_windows(len(offsets), size, step_overlap, max_chunks)
            for window in windows:
                start, end = char_span(offsets, window)
                # A one-window document is sent whole (its text may carry leading or trailing spaces).
                pairs.append((query, doc if len(windows) == 1 else doc[start:end]))
                owners.append(i)
            per_doc.append(len(windows))
            truncated.append(query_cut or windows[-1][1] < len(offsets))
        return ChunkedPairs(pairs, owners, per_doc, truncated)
