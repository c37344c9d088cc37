"""BERT pair encoding `[CLS] a [SEP] b [SEP]` (token types 0/1) on Hugging Face `tokenizers`."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tokenizers import Encoding, Tokenizer

from app.errors import InvalidInput, ModelLoadError

Truncation = Literal["longest_first", "only_second"]
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


@functools.lru_cache(maxsize=16)
def configured(spec: str, max_length: int | None = None, strategy: Truncation | None = None) -> Tokenizer:
    """A Rust tokenizer for this tokenizer.json text, without padding, truncating to max_length with `strategy`
    (None: not at all). Shared by every model and chunker that asks for the same one: each copy holds ~5 MB, and
    the shipped models use one vocabulary. Encoding never changes a tokenizer's settings, so sharing is
    thread-safe."""
    tokenizer = Tokenizer.from_str(spec)
    tokenizer.no_padding()
    if max_length is None or strategy is None:
        tokenizer.no_truncation()
    else:
        tokenizer.enable_truncation(max_length, strategy=strategy)
    return tokenizer


@dataclass(frozen=True)
class EncodedPair:
    input_ids: np.ndarray  # (T,) int64, unpadded
    token_type_ids: np.ndarray  # (T,) int64
    truncated: bool

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class Batch:
    """Right-padded model inputs for N pairs, all (N, T) int64."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    @property
    def padded_tokens(self) -> int:
        return int(self.input_ids.size)


class PairTokenizer:
    """Encodes (a, b) pairs, thread-safe. A BERT-framed vocabulary needs one Rust tokenizer in all (~6 MB each):
    each text is cut into word pieces alone, and the pair is framed and truncated here, as the tokenizer would;
    any other template (RoBERTa's, say) keeps one configured tokenizer per truncation strategy."""

    def __init__(self, tokenizer: Tokenizer, max_length: int) -> None:
        self.max_length = max_length
        self.pad_id = tokenizer.token_to_id("[PAD]") or 0
        self._spec = tokenizer.to_str()
        self._pieces = configured(self._spec)  # single texts, no specials, no truncation
        self._frame = _bert_frame(self._pieces)
        self._templated: dict[Truncation, Tokenizer] = {}  # built on first use, only for non-BERT templates

    @classmethod
    def from_dir(cls, model_dir: Path, max_length: int) -> PairTokenizer:
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise ModelLoadError(f"{path}: missing tokenizer.json")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises plain Exception on bad files
            raise ModelLoadError(f"{path}: cannot be read ({exc})") from exc
        return cls(tokenizer, max_length)

    def encode_pairs(
        self,
        pairs: Sequence[tuple[str, str]],
        truncation: Truncation = "longest_first",
        *,
        truncate: bool = True,
    ) -> list[EncodedPair]:
        """Encode pairs; with truncate=False a pair over max_length raises InvalidInput."""
        if not pairs:
            return []
        if self._frame is None:
            return self._encode_templated(pairs, truncation, truncate)
        first = pairs[0][0]
        if len(pairs) > 1 and all(a is first or a == first for a, _ in pairs):
            # One query and many documents: the query is cut into pieces once, not once per pair.
            query = self._pieces.encode(first, add_special_tokens=False).ids
            docs = self._piece_ids([b for _, b in pairs])
            return [self._framed(i, query, doc, truncation, truncate) for i, doc in enumerate(docs)]
        pieces = self._piece_ids([text for pair in pairs for text in pair])
        return [self._framed(i, pieces[2 * i], pieces[2 * i + 1], truncation, truncate) for i in range(len(pairs))]

    def _piece_ids(self, texts: list[str]) -> list[list[int]]:
        if len(texts) <= 2:  # encode() on this thread; encode_batch would hand them to the Rayon pool and back
            return [self._pieces.encode(t, add_special_tokens=False).ids for t in texts]
        return [e.ids for e in self._pieces.encode_batch(texts, add_special_tokens=False)]

    def _framed(
        self, i: int, first: list[int], second: list[int], truncation: Truncation, truncate: bool
    ) -> EncodedPair:
        """`[CLS] first [SEP] second [SEP]`, cut with the tokenizer's own truncation rule (tests check they match)."""
        assert self._frame is not None
        cls_id, sep_id = self._frame
        n1, n2 = _truncated_lengths(len(first), len(second), self.max_length - 3, truncation)
        cut = n1 < len(first) or n2 < len(second)
        if cut and not truncate:
            raise InvalidInput(
                f"pair {i} is longer than max_length={self.max_length} tokens and truncate is false",
                param="truncate",
            )
        row = np.empty(n1 + n2 + 3, dtype=np.int64)
        row[0], row[n1 + 1], row[-1] = cls_id, sep_id, sep_id
        row[1 : n1 + 1] = first[:n1]
        row[n1 + 2 : -1] = second[:n2]
        types = np.zeros(len(row), dtype=np.int64)
        types[n1 + 2 :] = 1
        return EncodedPair(row, types, cut)

    def _encode_templated(
        self, pairs: Sequence[tuple[str, str]], truncation: Truncation, truncate: bool
    ) -> list[EncodedPair]:
        """Any post-processor template: the Rust tokenizer frames and truncates the pair itself."""
        tokenizer = self._templated.get(truncation)
        if tokenizer is None:  # two threads may both build it: the same tokenizer, the last one kept
            tokenizer = self._templated[truncation] = configured(self._spec, self.max_length, truncation)
        try:
            # One pair: encode() on this thread; encode_batch would hand it to the Rayon pool and back.
            encodings = [tokenizer.encode(*pairs[0])] if len(pairs) == 1 else tokenizer.encode_batch(list(pairs))
        except Exception as exc:  # only_second cannot fit a first text longer than max_length
            raise InvalidInput(
                f"a first text (query) is longer than max_length={self.max_length} tokens on its own; "
                "shorten it or use truncation 'longest_first'",
                param="truncation",
            ) from exc
        out = [_to_pair(e) for e in encodings]
        if not truncate:
            for i, pair in enumerate(out):
                if pair.truncated:
                    raise InvalidInput(
                        f"pair {i} is longer than max_length={self.max_length} tokens and truncate is false",
                        param="truncate",
                    )
        return out

    def pad(self, pairs: Sequence[EncodedPair]) -> Batch:
        width = max(len(p) for p in pairs)
        input_ids = np.full((len(pairs), width), self.pad_id, dtype=np.int64)
        token_type_ids = np.zeros((len(pairs), width), dtype=np.int64)
        attention_mask = np.zeros((len(pairs), width), dtype=np.int64)
        for row, pair in enumerate(pairs):
            n = len(pair)
            input_ids[row, :n] = pair.input_ids
            token_type_ids[row, :n] = pair.token_type_ids
            attention_mask[row, :n] = 1
        return Batch(input_ids, attention_mask, token_type_ids)


def _truncated_lengths(n1: int, n2: int, budget: int, truncation: Truncation) -> tuple[int, int]:
    """Kept lengths of the first and second text, as Hugging Face tokenizers truncate a pair to `budget`
    tokens (max_length minus the 3 special tokens)."""
    if n1 + n2 <= budget:
        return n1, n2
    if truncation == "only_second":
        if n2 <= n1 + n2 - budget:  # the query alone leaves no room for the document
            raise InvalidInput(
                f"a first text (query) is longer than max_length={budget + 3} tokens on its own; "
                "shorten it or use truncation 'longest_first'",
                param="truncation",
            )
        return n1, budget - n1
    short, long_ = min(n1, n2), max(n1, n2)
    keep_short, keep_long = short, (long_ if short > budget else max(short, budget - short))
    if keep_short + keep_long > budget:
        keep_short = budget // 2
        keep_long = keep_short + budget % 2
    return (keep_short, keep_long) if n1 <= n2 else (keep_long, keep_short)


def _bert_frame(pieces: Tokenizer) -> tuple[int, int] | None:
    """([CLS] id, [SEP] id) if this tokenizer frames a pair as BERT does, `[CLS] a [SEP] b [SEP]` with token
    types 0 then 1; None (no shortcut) for any other template, e.g. RoBERTa's."""
    cls_id, sep_id = pieces.token_to_id("[CLS]"), pieces.token_to_id("[SEP]")
    if cls_id is None or sep_id is None:
        return None
    a, b = "hashrank probe", "a second text"
    whole = pieces.encode(a, b)  # no truncation: the whole template
    ids_a = pieces.encode(a, add_special_tokens=False).ids
    ids_b = pieces.encode(b, add_special_tokens=False).ids
    expected = [cls_id, *ids_a, sep_id, *ids_b, sep_id]
    types = [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)
    return (cls_id, sep_id) if whole.ids == expected and whole.type_ids == types else None


def _to_pair(encoding: Encoding) -> EncodedPair:
    return EncodedPair(
        input_ids=np.asarray(encoding.ids, dtype=np.int64),
        token_type_ids=np.asarray(encoding.type_ids, dtype=np.int64),
        truncated=bool(encoding.overflowing),
    )


def copy_tokenizer_files(src_dir: Path, dst_dir: Path, max_length: int) -> None:
    """Copy tokenizer files into a model directory, with no built-in truncation or padding."""
    tokenizer = Tokenizer.from_file(str(src_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    tokenizer.save(str(dst_dir / "tokenizer.json"))
    for name in TOKENIZER_FILES[1:]:
        if (src_dir / name).is_file():
            data = (src_dir / name).read_text(encoding="utf-8")
            if name == "tokenizer_config.json":
                config = json.loads(data)
                config["model_max_length"] = max_length
                data = json.dumps(config, indent=2) + "\n"
            (dst_dir / name).write_text(data, encoding="utf-8")
