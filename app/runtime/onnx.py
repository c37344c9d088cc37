"""ONNX Runtime backend: runs model.onnx (fp32) or model.int8.onnx on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.errors import ModelLoadError, RuntimeFailure
from app.modeling.tokenizer import Batch
from app.runtime.base import Backend

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxRuntime:
    def __init__(self, session: ort.InferenceSession, backend: Backend) -> None:
        self.session = session
        self.backend: Backend = backend
        names = {i.name for i in session.get_inputs()}
        missing = [n for n in _INPUTS if n not in names]
        if missing:
            raise ModelLoadError(f"ONNX graph has no input {missing[0]!r}; re-export with `hashrank export-onnx`")
        # Graphs exported without token types (some third-party ones) get only what they declare.
        self._feeds = [n for n in _INPUTS if n in names]

    @classmethod
    def load(cls, model_dir: Path, *, int8: bool = False, threads: int = 1) -> OnnxRuntime:
        path = Path(model_dir) / (INT8_FILE if int8 else ONNX_FILE)
        if not path.is_file():
            raise ModelLoadError(f"{path}: missing {path.name}; create it with `hashrank export-onnx {model_dir}`")
        options = ort.SessionOptions()
        # One request batch at a time per session; parallelism comes from threads inside each op,
        # and the server scales out with processes rather than inter-op threads.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning worker threads burn the CPU we share with tokenization and the event loop.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The arena keeps the largest batch's activations forever (~70 MB per model after a 8x512 batch);
        # plain malloc plus release_free_memory() on idle costs no measurable speed here.
        options.enable_cpu_mem_arena = False
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types, all Exception
            raise ModelLoadError(f"{path}: ONNX Runtime cannot load it ({exc})") from exc
        return cls(session, "onnx-int8" if int8 else "onnx")

    def run(self, batch: Batch) -> np.ndarray:
        feeds = {name: getattr(batch, name) for name in self._feeds}
        try:
            (logits,) = self.session.run(["logits"], feeds)
        except Exception as exc:
            raise RuntimeFailure(f"ONNX Runtime failed on a batch of shape {batch.input_ids.shape}") from exc
        return np.asarray(logits, dtype=np.float32)  # (N, num_labels)
