"""Score calibration folded into the classifier: the fit, the error measure, and a smoke run on a copy of the
shipped reranker whose rankings must not move."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.scorer import Scorer
from tests.conftest import RERANK_MODEL_DIR
from training.calibrate import Platt, binned_error, calibrate, fit


def test_fit_recovers_a_known_calibration() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, 20_000)
    truth = Platt(0.5, -1.0)
    labels = (rng.random(logits.size) < truth(logits)).astype(float)
    got = fit(logits, labels, np.ones(logits.size), "bce")
    assert abs(got.a - 0.5) < 0.03 and abs(got.b + 1.0) < 0.05
    got = fit(logits, truth(logits), np.ones(logits.size), "mse")
    assert abs(got.a - 0.5) < 1e-3 and abs(got.b + 1.0) < 1e-3


def test_binned_error_is_zero_when_calibrated_and_large_when_not() -> None:
    scores = np.linspace(0.005, 0.995, 1000)
    assert binned_error(scores, scores)[0] < 1e-9
    error, rows = binned_error(scores, np.zeros_like(scores))
    assert abs(error - scores.mean()) < 1e-9 and len(rows) == 10


@pytest.mark.slow
def test_smoke_calibration_keeps_the_ranking(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(RERANK_MODEL_DIR, model)
    pairs = [("how long do cats sleep", d) for d in ("Cats sleep 16 hours.", "Dogs bark.", "Cats nap a lot.")]
    before = Scorer.load(model, "onnx").score(pairs, raw=True)
    report = calibrate(model, "rerank", smoke=True)
    after = Scorer.load(model, "onnx").score(pairs, raw=True)
    assert report["a"] > 0 and set(report["test"]) == {"wikiqa", "insuranceqa"}
    np.testing.assert_allclose(after, report["a"] * before + report["b"], atol=1e-4)  # folded into the head
    assert json.loads((model / "calibration.json").read_text())["b"] == report["b"]
    assert (model / "calibration.png").stat().st_size > 0
    assert (model / "model.int8.onnx").stat().st_mtime >= (model / "model.safetensors").stat().st_mtime
