"""Loading checkpoints in the published key layout, failing clearly on bad ones, and save->load round trips."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from app.errors import ModelLoadError
from app.modeling.bert_hash import BertHashForSequenceClassification
from app.modeling.checkpoint import load_model, save_model
from app.modeling.config import PRESETS, ModelConfig

V, H, FF, P, POS = 120, 16, 24, 4, 40  # a tiny vocabulary keeps these files a few kB


def published_config(model_type: str = "bert_hash") -> dict[str, Any]:
    """A config.json as NeuML/dleemiller publish it (shared/reference/bert-hash.md §1.2), shrunk."""
    raw: dict[str, Any] = {
        "architectures": ["BertHashForSequenceClassification"],
        "auto_map": {"AutoConfig": "configuration_bert_hash.BertHashConfig"},
        "model_type": model_type,
        "vocab_size": V,
        "hidden_size": H,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": FF,
        "max_position_embeddings": POS,
        "type_vocab_size": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None,
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "use_cache": True,
        "torch_dtype": "float32",
        "transformers_version": "4.55.4",
    }
    if model_type == "bert_hash":
        raw["projections"] = P
    return raw


def published_tensors(*, hashed: bool = True, pooler: bool = True, head: bool = True) -> dict[str, np.ndarray]:
    """Key names and shapes written out from the reference (§3), not taken from our module tree."""
    rng = np.random.default_rng(0)
    shapes: dict[str, tuple[int, ...]] = {}
    if hashed:
        shapes["embeddings.word_embeddings.embeddings.weight"] = (V, P)
        shapes["embeddings.word_embeddings.projections.weight"] = (H, P)
        shapes["embeddings.word_embeddings.projections.bias"] = (H,)
    else:
        shapes["embeddings.word_embeddings.weight"] = (V, H)
    shapes["embeddings.position_embeddings.weight"] = (POS, H)
    shapes["embeddings.token_type_embeddings.weight"] = (2, H)
    shapes["embeddings.LayerNorm.weight"] = shapes["embeddings.LayerNorm.bias"] = (H,)
    for i in range(2):
        p = f"encoder.layer.{i}"
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes[f"{p}.{name}.weight"], shapes[f"{p}.{name}.bias"] = (H, H), (H,)
        shapes[f"{p}.attention.output.LayerNorm.weight"] = shapes[f"{p}.attention.output.LayerNorm.bias"] = (H,)
        shapes[f"{p}.intermediate.dense.weight"], shapes[f"{p}.intermediate.dense.bias"] = (FF, H), (FF,)
        shapes[f"{p}.output.dense.weight"], shapes[f"{p}.output.dense.bias"] = (H, FF), (H,)
        shapes[f"{p}.output.LayerNorm.weight"] = shapes[f"{p}.output.LayerNorm.bias"] = (H,)
    if pooler:
        shapes["pooler.dense.weight"], shapes["pooler.dense.bias"] = (H, H), (H,)
    tensors = {"bert." + k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    if head:
        tensors["classifier.weight"] = rng.standard_normal((1, H)).astype(np.float32)
        tensors["classifier.bias"] = rng.standard_normal((1,)).astype(np.float32)
    return tensors


def write_dir(path: Path, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    save_file(tensors, str(path / "model.safetensors"))
    return path


def _assert_loaded(model: BertHashForSequenceClassification, tensors: dict[str, np.ndarray]) -> None:
    state = model.state_dict()
    for key, array in tensors.items():
        canonical = key if key.startswith(("bert.", "classifier.")) else "bert." + key
        assert torch.equal(state[canonical], torch.from_numpy(array)), key


def test_loads_sts_cross_encoder_layout(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tensors = published_tensors()
    with caplog.at_level(logging.WARNING):
        model = load_model(write_dir(tmp_path, published_config(), tensors))
    assert model.config.projections == P and model.config.activation == "sigmoid"
    assert not caplog.records
    _assert_loaded(model, tensors)
    assert not model.training


def test_loads_keys_without_bert_prefix(tmp_path: Path) -> None:
    tensors = {k.removeprefix("bert."): v for k, v in published_tensors().items()}
    _assert_loaded(load_model(write_dir(tmp_path, published_config(), tensors)), tensors)


def test_missing_pooler_loads_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tensors = published_tensors(pooler=False)
    with caplog.at_level(logging.WARNING, logger="app.modeling.checkpoint"):
        model = load_model(write_dir(tmp_path, published_config(), tensors))
    _assert_loaded(model, tensors)
    assert any("bert.pooler.dense.weight" in r.getMessage() for r in caplog.records)


def test_base_checkpoint_needs_allow_missing_head(tmp_path: Path) -> None:
    # NeuML's bert-hash-* base files: `bert.` prefix, no pooler, no classifier, plus HF's position_ids buffer.
    tensors = published_tensors(pooler=False, head=False)
    tensors["bert.embeddings.position_ids"] = np.arange(POS, dtype=np.int64)[None]
    model_dir = write_dir(tmp_path, published_config(), tensors)
    with pytest.raises(ModelLoadError, match="missing tensor 'classifier.weight'"):
        load_model(model_dir)
    model = load_model(model_dir, allow_missing_head=True)
    _assert_loaded(model, {k: v for k, v in tensors.items() if not k.endswith("position_ids")})


def test_loads_plain_bert(tmp_path: Path) -> None:
    tensors = published_tensors(hashed=False)
    model = load_model(write_dir(tmp_path, published_config("bert"), tensors))
    assert model.config.projections is None
    _assert_loaded(model, tensors)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t, c: t.update({"bert.pooler.dense.weight": np.zeros((H, H + 1), np.float32)}), "pooler.dense.weight"),
        (lambda t, c: t.update({"cls.predictions.bias": np.zeros(V, np.float32)}), "unexpected tensor"),
        (lambda t, c: t.pop("bert.encoder.layer.1.output.dense.bias"), "layer.1.output.dense.bias"),
        (lambda t, c: c.update({"model_type": "roberta"}), "unknown model_type 'roberta'"),
        (lambda t, c: c.update({"projections": P * 2}), "embeddings.word_embeddings.embeddings.weight"),
        (lambda t, c: c.update({"hidden_act": "relu"}), "hidden_act"),
    ],
    ids=["wrong-shape", "unexpected-key", "missing-key", "unknown-model-type", "config-mismatch", "bad-activation"],
)
def test_bad_checkpoints_fail_naming_the_problem(tmp_path: Path, change: Any, message: str) -> None:
    tensors, config = published_tensors(), published_config()
    change(tensors, config)
    with pytest.raises(ModelLoadError, match=message.replace(".", r"\.")):
        load_model(write_dir(tmp_path, config, tensors))


def test_missing_files_fail_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(published_config()), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="model.safetensors"):
        load_model(tmp_path)


@pytest.mark.parametrize("cfg", [PRESETS["pico"], PRESETS["femto"].replace(max_length=128, num_labels=2)])
def test_save_load_round_trip_is_bit_exact(tmp_path: Path, cfg: ModelConfig) -> None:
    torch.manual_seed(0)
    model = BertHashForSequenceClassification(cfg)
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.config == cfg
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    # The remote-code shims travel with bert_hash directories (CrossEncoder(trust_remote_code=True)).
    assert (tmp_path / "modeling_bert_hash.py").is_file() and (tmp_path / "configuration_bert_hash.py").is_file()
