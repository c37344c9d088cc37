"""The runtime contract: a padded batch of pairs in, float32 logits out. Nothing above runtime/ imports
torch or onnxruntime."""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np

from app.modeling.tokenizer import Batch

Backend = Literal["onnx", "onnx-int8", "torch"]


class Runtime(Protocol):
    backend: Backend

    def run(self, batch: Batch) -> np.ndarray:
        """Logits of shape (N, num_labels), float32, row i for pair i of the batch."""
        ...
