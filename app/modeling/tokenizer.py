"""BERT pair encoding `[CLS] a [SEP] b [SEP]` (token types 0/1) on Hugging Face `tokenizers`."""

from __future__ import annotations

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
    """Encodes (a, b) pairs; one Rust tokenizer per truncation strategy, so encoding is thread-safe."""

    def __init__(self, tokenizer: Tokenizer, max_length: int) -> None:
        self.max_length = max_length
        self.pad_id = tokenizer.token_to_id("[PAD]") or 0
        self._by_strategy: dict[Truncation, Tokenizer] = {}
        for strategy in ("longest_first", "only_second"):
            tok = Tokenizer.from_str(tokenizer.to_str())
            tok.no_padding()
            tok.enable_truncation(max_length, strategy=strategy)
            self._by_strategy[strategy] = tok

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
        tokenizer = self._by_strategy[truncation]
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

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts of single texts without special tokens or truncation (for chunking and limits)."""
        tok = self._by_strategy["longest_first"]
        return [len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=False)]

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
