"""training.grow on the real sts-hash-nano: the grown shape, what it keeps, and that it starts near the source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from app.evaluation import spearman
from app.modeling.bert_hash import BertHashForSequenceClassification
from app.modeling.checkpoint import load_model, save_model
from app.modeling.tokenizer import PairTokenizer
from training.data import sts_b
from training.grow import grow

ROOT = Path(__file__).resolve().parents[2]
STS_MODEL = ROOT / "models" / "sts-hash-nano"


@pytest.fixture(scope="module")
def source() -> BertHashForSequenceClassification:
    return load_model(STS_MODEL)


def _logits(model: BertHashForSequenceClassification, pairs: list[tuple[str, str]]) -> np.ndarray:
    tok = PairTokenizer.from_dir(STS_MODEL, model.config.max_length)
    batch = tok.pad(tok.encode_pairs(pairs, "longest_first"))
    with torch.no_grad():
        out = model(*(torch.from_numpy(x) for x in (batch.input_ids, batch.attention_mask, batch.token_type_ids)))
    return out[:, 0].numpy()


def test_grown_shape_and_what_it_keeps(source: BertHashForSequenceClassification) -> None:
    grown = grow(source, layers=3, ffn=320, positions=256)
    cfg = grown.config
    assert (cfg.num_hidden_layers, cfg.intermediate_size, cfg.max_position_embeddings) == (3, 320, 256)
    assert cfg.max_length == 256 and cfg.projections == source.config.projections
    assert grown.num_parameters() == 987_233 <= 1_000_000

    src, new = source.state_dict(), grown.state_dict()
    key = "bert.embeddings.word_embeddings.embeddings.weight"
    assert torch.equal(new[key], src[key])  # the hash table is untouched
    key = "bert.embeddings.position_embeddings.weight"
    assert torch.equal(new[key], src[key][:256])
    # The appended layer writes nothing into the residual stream yet; its attention reads like the last layer's.
    for writer in ("attention.output.dense", "output.dense"):
        assert not new[f"bert.encoder.layer.2.{writer}.weight"].any()
        assert not new[f"bert.encoder.layer.2.{writer}.bias"].any()
    key = "attention.self.query.weight"
    assert torch.equal(new[f"bert.encoder.layer.2.{key}"], src[f"bert.encoder.layer.1.{key}"])
    # Each kept neuron keeps its input row and its output column together.
    w_in = src["bert.encoder.layer.0.intermediate.dense.weight"]
    w_out = src["bert.encoder.layer.0.output.dense.weight"]
    grown_in = new["bert.encoder.layer.0.intermediate.dense.weight"]
    kept = [int(torch.nonzero((w_in == row).all(dim=1))[0]) for row in grown_in]
    assert kept == sorted(kept) and len(set(kept)) == 320
    assert torch.equal(new["bert.encoder.layer.0.output.dense.weight"], w_out[:, kept])


def test_growing_by_nothing_is_the_identity(source: BertHashForSequenceClassification) -> None:
    same = grow(source, layers=2, ffn=512, positions=512)
    pairs = [("A man is playing a guitar.", "A man plays the guitar."), ("A cat sleeps.", "The stock market fell.")]
    np.testing.assert_array_equal(_logits(same, pairs), _logits(source, pairs))


def test_grown_model_starts_near_the_source(source: BertHashForSequenceClassification) -> None:
    pairs = sts_b("dev")[:300]
    texts = [(p.a, p.b) for p in pairs]
    grown = grow(source, layers=3, ffn=320, positions=256)
    source_logits, grown_logits = _logits(source, texts), _logits(grown, texts)
    assert spearman(grown_logits, source_logits) > 0.95  # the same ranking of pairs, near enough
    gold = np.array([p.score for p in pairs])
    assert spearman(grown_logits, gold) > spearman(source_logits, gold) - 0.03


def test_grow_refuses_to_shrink_depth_or_widen(source: BertHashForSequenceClassification) -> None:
    with pytest.raises(ValueError):
        grow(source, layers=1, ffn=320, positions=256)
    with pytest.raises(ValueError):
        grow(source, layers=3, ffn=1024, positions=256)
    with pytest.raises(ValueError):
        grow(source, layers=3, ffn=320, positions=1024)


@pytest.mark.slow
def test_rerank_trains_and_snapshots_a_grown_model(source: BertHashForSequenceClassification, tmp_path: Path) -> None:
    init, out, snap, run_dir = (tmp_path / name for name in ("grown", "model", "snapshot", "run"))
    save_model(grow(source, layers=3, ffn=320, positions=256), init, tokenizer_dir=STS_MODEL)
    base = [sys.executable, "-m", "training.rerank", "--smoke", "--teacher", "none", "--run-dir", str(run_dir)]
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    train = [*base, "--out", str(out), "--init-from", str(init), "--steps", "2", "--no-export"]
    subprocess.run(train, cwd=ROOT, check=True, timeout=300, env=env)
    subprocess.run([*base, "--out", str(snap), "--snapshot"], cwd=ROOT, check=True, timeout=300, env=env)
    for model_dir in (out, snap):  # trained in the grown shape, and the snapshot rebuilds that shape
        model = load_model(model_dir)
        assert (model.config.num_hidden_layers, model.config.intermediate_size) == (3, 320)
        assert model.num_parameters() == 987_233
