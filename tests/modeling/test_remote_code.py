"""A shipped directory loads in sentence-transformers through our trust_remote_code shims, same scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.scorer import Scorer


def test_cross_encoder_matches_hashrank(model_dir: Path, dev_pairs: list[tuple[str, str]]) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    pairs = dev_pairs[:100]
    encoder = sentence_transformers.CrossEncoder(str(model_dir), trust_remote_code=True, device="cpu")
    assert type(encoder.model).__name__ == "BertHashForSequenceClassification"
    theirs = encoder.predict(pairs, batch_size=32, show_progress_bar=False)
    ours = Scorer.load(model_dir, "onnx").score(pairs)
    assert np.abs(np.asarray(theirs, dtype=np.float64) - ours).max() <= 1e-5
