"""Shared fixtures: the shipped model directories and the evaluation data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"
STS_MODEL_DIR = MODELS_DIR / "sts-hash-nano"
RERANK_MODEL_DIR = MODELS_DIR / "rerank-hash-nano"
DATA_DIR = Path(os.environ.get("HASHRANK_DATA_DIR", ROOT.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def sts_model_dir() -> Path:
    assert (STS_MODEL_DIR / "model.onnx").is_file(), f"shipped model missing: {STS_MODEL_DIR}"
    return STS_MODEL_DIR


@pytest.fixture(scope="session")
def data_dir() -> Path:
    assert DATA_DIR.is_dir(), f"evaluation data missing: {DATA_DIR} (set HASHRANK_DATA_DIR)"
    return DATA_DIR
