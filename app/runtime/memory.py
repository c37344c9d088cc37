"""Give freed heap memory back to the OS.

ONNX Runtime's per-batch activations come from malloc (the session arena is off, see runtime/onnx.py).
glibc keeps freed blocks in the heap, so after one large batch (8 pairs of 512 tokens, the warm-up) a worker
would hold that peak for good. `malloc_trim(0)` returns it; it costs ~50 us, so we call it when a model's
queue drains, never between batches under load (re-faulting the pages would cost more than it saves).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # glibc only; musl has no malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Return free heap pages to the OS where the C library allows it; True if it did anything."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
