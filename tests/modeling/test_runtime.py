"""Backends behind load_runtime: clear load errors, and torch and ONNX giving the same scores."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from app.errors import ModelLoadError
from app.runtime import load_runtime
from app.scorer import Scorer


@pytest.mark.parametrize(("backend", "file"), [("onnx", "model.onnx"), ("onnx-int8", "model.int8.onnx")])
def test_missing_onnx_file_names_it(random_model_dir: Path, tmp_path: Path, backend: str, file: str) -> None:
    for name in ("config.json", "model.safetensors"):
        shutil.copy(random_model_dir / name, tmp_path / name)
    with pytest.raises(ModelLoadError, match=rf"{tmp_path / file}: missing {file}.*hashrank export-onnx"):
        load_runtime(tmp_path, backend)  # type: ignore[arg-type]


def test_corrupt_onnx_file_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ModelLoadError, match="model.onnx: ONNX Runtime cannot load it"):
        load_runtime(tmp_path, "onnx")


def test_bad_backend_and_threads(random_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="unknown backend 'tensorflow'"):
        load_runtime(random_model_dir, "tensorflow")  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError, match="threads must be >= 1"):
        load_runtime(random_model_dir, "onnx", threads=0)


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8", "torch"])
def test_backend_attribute(random_model_dir: Path, backend: str) -> None:
    assert load_runtime(random_model_dir, backend).backend == backend  # type: ignore[arg-type]


def test_torch_and_onnx_scores_agree_on_sts_dev(model_dir: Path, dev_pairs: list[tuple[str, str]]) -> None:
    torch_scores = Scorer.load(model_dir, "torch").score(dev_pairs)
    onnx_scores = Scorer.load(model_dir, "onnx").score(dev_pairs)
    assert np.all((onnx_scores > 0) & (onnx_scores < 1))
    assert np.abs(torch_scores - onnx_scores).max() <= 1e-4


def test_batch_size_does_not_change_scores(random_model_dir: Path, dev_pairs: list[tuple[str, str]]) -> None:
    scorer = Scorer.load(random_model_dir, "onnx")
    np.testing.assert_allclose(
        scorer.score(dev_pairs[:40], batch_size=1), scorer.score(dev_pairs[:40], batch_size=40), rtol=0, atol=1e-6
    )
