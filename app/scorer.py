"""Scorer: tokenizer + runtime + activation for one model directory; the one synchronous scoring path
that the CLI, evaluation, warm-up and the server's batcher all share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.modeling.config import ModelConfig
from app.modeling.tokenizer import EncodedPair, PairTokenizer, Truncation
from app.runtime import load_runtime
from app.runtime.base import Backend, Runtime


@dataclass
class Scorer:
    config: ModelConfig
    tokenizer: PairTokenizer
    runtime: Runtime

    @classmethod
    def load(
        cls, model_dir: Path, backend: Backend = "onnx", *, threads: int = 1, max_length: int | None = None
    ) -> Scorer:
        config = ModelConfig.load(Path(model_dir))
        if max_length is not None:
            config = config.replace(max_length=min(max_length, config.max_position_embeddings))
        tokenizer = PairTokenizer.from_dir(Path(model_dir), config.max_length)
        return cls(config, tokenizer, load_runtime(Path(model_dir), backend, threads=threads))

    def activate(self, logits: np.ndarray) -> np.ndarray:
        """(N, num_labels) logits -> (N,) scores of the first label (sigmoid unless the config says identity)."""
        first = logits[:, 0].astype(np.float64)
        if self.config.activation == "sigmoid":
            return 1.0 / (1.0 + np.exp(-first))
        return first

    def logits(self, encoded: Sequence[EncodedPair], batch_size: int = 32) -> np.ndarray:
        """Logits (N,) of encoded pairs, run in length-sorted batches (padding stays low), in input order."""
        out = np.empty(len(encoded), dtype=np.float32)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self.runtime.run(self.tokenizer.pad([encoded[i] for i in rows]))[:, 0]
        return out

    def score(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        raw: bool = False,
        truncation: Truncation = "longest_first",
        batch_size: int = 32,
    ) -> np.ndarray:
        """Scores (N,) in input order: sigmoid(logit) in [0, 1], or the logit itself with raw=True."""
        logits = self.logits(self.tokenizer.encode_pairs(pairs, truncation), batch_size)
        return logits.astype(np.float64) if raw else self.activate(logits[:, None])
