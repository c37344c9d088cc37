"""ScoreCache on its own: LRU order, the byte bound, and keys that separate what must not share a score."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np

from app.cache import ENTRY_BYTES, CachedScore, ScoreCache, model_fingerprint
from tests.conftest import RERANK_MODEL_DIR, STS_MODEL_DIR


def entry(value: float) -> CachedScore:
    return CachedScore(np.array([value], dtype=np.float32), tokens=5, truncated=False)


def test_lru_keeps_the_recently_used() -> None:
    cache = ScoreCache(max_bytes=3 * ENTRY_BYTES, fingerprint=b"m")
    keys = cache.keys([("q", "a"), ("q", "b"), ("q", "c"), ("q", "d")], "only_second", truncate=True)
    cache.put_many(keys[:3], [entry(1), entry(2), entry(3)])
    assert cache.get_many(keys[:1])[0] == entry(1)  # "a" is now the most recent
    cache.put_many(keys[3:], [entry(4)])  # evicts "b", the least recent
    assert [e is not None for e in cache.get_many(keys)] == [True, False, True, True]
    assert len(cache) == 3


def test_keys_separate_texts_truncation_and_model() -> None:
    cache = ScoreCache(max_bytes=1 << 20, fingerprint=b"model-1")
    other = ScoreCache(max_bytes=1 << 20, fingerprint=b"model-2")
    pairs = [("ab", "c"), ("a", "bc"), ("a\ud800", "b")]  # a lone surrogate still makes a key
    keys = cache.keys(pairs, "longest_first", truncate=True)
    assert len(set(keys)) == 3
    assert keys != cache.keys(pairs, "only_second", truncate=True)
    assert keys != cache.keys(pairs, "longest_first", truncate=False)
    assert keys != other.keys(pairs, "longest_first", truncate=True)
    assert keys == cache.keys(pairs, "longest_first", truncate=True)


def test_fingerprint_follows_the_served_file(tmp_path: Path) -> None:
    sts = model_fingerprint(STS_MODEL_DIR, "onnx-int8", 512)
    assert sts == model_fingerprint(STS_MODEL_DIR, "onnx-int8", 512)
    assert sts != model_fingerprint(RERANK_MODEL_DIR, "onnx-int8", 512)  # same config, other weights
    assert sts != model_fingerprint(STS_MODEL_DIR, "onnx", 512)
    assert sts != model_fingerprint(STS_MODEL_DIR, "onnx-int8", 256)
    copy = tmp_path / "model.int8.onnx"
    copy.write_bytes((STS_MODEL_DIR / "model.int8.onnx").read_bytes())
    assert model_fingerprint(tmp_path, "onnx-int8", 512) == sts
    copy.write_bytes(copy.read_bytes() + b"\0")  # a retrained or re-exported file
    assert model_fingerprint(tmp_path, "onnx-int8", 512) != sts


def test_memory_stays_under_the_bound() -> None:
    max_bytes = 2 << 20
    cache = ScoreCache(max_bytes=max_bytes, fingerprint=b"m")
    pairs = [(f"query {i}", f"a document of some length, number {i}") for i in range(cache.capacity * 2)]
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    keys = cache.keys(pairs, "only_second", truncate=True)
    cache.put_many(keys, [entry(float(i)) for i in range(len(pairs))])
    del keys  # what remains allocated is what the cache holds
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(cache) == cache.capacity
    assert held - before <= max_bytes, (held - before) / len(cache)
