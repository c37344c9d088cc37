"""ScoreCache: a bounded LRU of (model, truncation, text pair) -> what scoring the pair gave (logits, tokens,
truncated), so a pair seen again skips tokenizing and the forward pass. Off unless HASHRANK_CACHE_MB > 0.

Keys are 16-byte BLAKE2b digests of the model's fingerprint (a hash of the served graph's bytes, the backend
and max_length) and the pair, so the cache holds no request text, its memory per entry is fixed, and a changed
model file can never be answered from an old model's entries. It lives on the event loop: no lock.

    >>> cache = ScoreCache(max_bytes=64 << 20, fingerprint=model_fingerprint(path, "onnx-int8", 512))
    >>> keys = cache.keys([("query", "document")], "only_second", truncate=True)
    >>> cache.get_many(keys)
    [None]
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Bytes per entry, rounded up: the 16-byte key, the entry with its logits array and the OrderedDict slot
# measure ~315 B on CPython 3.11 with a 1-label model; tests/test_cache.py checks the bound holds.
ENTRY_BYTES = 400
# The graph file each backend serves; its bytes identify the model.
_SERVED_FILE = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx", "torch": "model.safetensors"}


@dataclass(frozen=True, slots=True)
class CachedScore:
    logits: np.ndarray  # (num_labels,) float32, as the runtime returned them
    tokens: int
    truncated: bool


def model_fingerprint(model_dir: Path, backend: str, max_length: int) -> bytes:
    """Digest of the served file's bytes, the backend and max_length: any change gives other keys."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{backend}\0{max_length}\0".encode())
    digest.update((Path(model_dir) / _SERVED_FILE[backend]).read_bytes())
    return digest.digest()


class ScoreCache:
    def __init__(self, max_bytes: int, fingerprint: bytes) -> None:
        self.capacity = max(1, max_bytes // ENTRY_BYTES)
        self.fingerprint = fingerprint
        self._entries: OrderedDict[bytes, CachedScore] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self, pairs: Sequence[tuple[str, str]], truncation: str, *, truncate: bool) -> list[bytes]:
        prefix = self.fingerprint + f"{truncation}\0{int(truncate)}\0".encode()
        keys = []
        for a, b in pairs:
            # The length of `a` makes ("ab", "c") and ("a", "bc") different keys.
            text = f"{len(a)}\0{a}{b}".encode("utf-8", "surrogatepass")
            keys.append(hashlib.blake2b(prefix + text, digest_size=16).digest())
        return keys

    def get_many(self, keys: Sequence[bytes]) -> list[CachedScore | None]:
        found = []
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            found.append(entry)
        return found

    def put_many(self, keys: Sequence[bytes], entries: Sequence[CachedScore]) -> None:
        for key, entry in zip(keys, entries, strict=True):
            self._entries[key] = entry
            self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
