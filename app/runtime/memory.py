"""Give freed heap memory back to the OS, and keep the heap in one piece.

ONNX Runtime's per-batch activations come from malloc (the session arena is off, see runtime/onnx.py).
glibc keeps freed blocks in the heap, so after one large batch (8 pairs of 512 tokens, the warm-up) a worker
would hold that peak for good. `malloc_trim(0)` returns it; the batcher calls it once a model's queue has
stayed empty for a second (batching.IDLE_TRIM_S), never between requests: trimming at every drain made the
next batch fault its pages back in (1-pair /score at c=1: p50 2.7 -> 1.8 ms without it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

_M_ARENA_MAX = -8  # mallopt parameter (glibc malloc.h)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # glibc only; musl has neither function
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def use_one_malloc_arena() -> bool:
    """glibc gives every thread that allocates its own arena, each keeping its own freed memory: with the
    tokenizer pool, the inference thread and the event loop that was ~45 MB of extra peak RSS under mixed
    load (294 -> 249 MB). One arena costs a lock our few threads rarely contend on. Call before the
    threads start; True if it applied."""
    libc = _libc()
    return bool(libc.mallopt(_M_ARENA_MAX, 1)) if libc is not None else False


def release_free_memory() -> bool:
    """Return free heap pages to the OS where the C library allows it; True if it did anything."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
