"""Pick the inference backend for a model directory; the one place that knows which module serves which."""

from __future__ import annotations

from pathlib import Path

from app.errors import ModelLoadError
from app.runtime.base import Backend, Runtime

BACKENDS: tuple[Backend, ...] = ("onnx", "onnx-int8", "torch")


def load_runtime(model_dir: Path, backend: Backend = "onnx", *, threads: int = 1) -> Runtime:
    """Load MODEL_DIR for one backend: "onnx" (model.onnx), "onnx-int8" (model.int8.onnx) or "torch"."""
    model_dir = Path(model_dir)
    if threads < 1:
        raise ModelLoadError(f"threads must be >= 1, got {threads}")
    # Imported here so the serving install (no torch) never touches app.runtime.torch, and the
    # torch-only tooling never pays for an onnxruntime session it does not use.
    if backend in ("onnx", "onnx-int8"):
        from app.runtime.onnx import OnnxRuntime

        return OnnxRuntime.load(model_dir, int8=backend == "onnx-int8", threads=threads)
    if backend == "torch":
        from app.runtime.torch import TorchRuntime

        return TorchRuntime.load(model_dir, threads=threads)
    raise ModelLoadError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
