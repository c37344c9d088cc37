"""PyTorch backend: runs model.safetensors directly. Only the torch/train installs have torch, so this
module is imported lazily by app.runtime.load_runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.errors import ModelLoadError, RuntimeFailure
from app.modeling.tokenizer import Batch
from app.runtime.base import Backend

try:
    import torch
except ImportError as exc:  # the serving install
    raise ModelLoadError("the torch backend needs PyTorch: pip install 'hashrank[torch]'") from exc

from app.modeling.bert_hash import BertHashForSequenceClassification  # noqa: E402  (needs torch)
from app.modeling.checkpoint import load_model  # noqa: E402


class TorchRuntime:
    def __init__(self, model: BertHashForSequenceClassification) -> None:
        self.model = model.eval()
        self.backend: Backend = "torch"

    @classmethod
    def load(cls, model_dir: Path, *, threads: int = 1) -> TorchRuntime:
        # Process-wide in torch; the last runtime loaded wins, which is fine for one model per process.
        torch.set_num_threads(threads)
        return cls(load_model(Path(model_dir)))

    def run(self, batch: Batch) -> np.ndarray:
        try:
            with torch.inference_mode():
                logits = self.model(
                    torch.from_numpy(batch.input_ids),
                    torch.from_numpy(batch.attention_mask),
                    torch.from_numpy(batch.token_type_ids),
                )
        except Exception as exc:
            raise RuntimeFailure(f"PyTorch failed on a batch of shape {batch.input_ids.shape}") from exc
        return logits.float().numpy()  # (N, num_labels)
