"""Fixtures for the model-core tests: a random-init nano directory and, once shipped, the trained one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.modeling.builders import random_nano_dir, shipped_or_skip, sts_dev_pairs


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    # The machine is shared with a training job; 1 thread also makes timings and results reproducible.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_nano_dir(tmp_path_factory)


@pytest.fixture(scope="session", params=["random-nano", "sts-hash-nano"])
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test using this runs on the random-init nano and on the shipped model (skipped until it exists)."""
    if request.param == "random-nano":
        return random_nano_dir(tmp_path_factory)
    return shipped_or_skip(request)


@pytest.fixture(scope="session")
def dev_pairs() -> list[tuple[str, str]]:
    # 200 of the 1,500 dev pairs: enough for a stable Spearman, cheap on one core.
    return sts_dev_pairs(200)
