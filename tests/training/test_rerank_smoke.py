"""The rerank-hash-nano recipe end to end on 40 WikiQA train questions (and 20 InsuranceQA ones): every list
type, resume, save, reload, and the recipe run twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from app.modeling.checkpoint import load_model
from app.modeling.tokenizer import PairTokenizer
from training import rerank, teachers
from training.rerank import list_losses
from training.rerank_data import average_precision, reciprocal_rank
from training.rerank_hyper import Hyper
from training.train import Caches, load_recipe, stage_settings

ROOT = Path(__file__).resolve().parents[2]


def test_ranking_metrics_by_hand() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    labels = np.array([0, 1, 0, 1])
    assert average_precision(scores, labels) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert reciprocal_rank(scores, labels) == pytest.approx(0.5)
    assert reciprocal_rank(scores, labels, k=1) == 0.0


def test_listwise_loss_prefers_the_gold_order() -> None:
    gold = torch.tensor([1.0, 0.0, 0.0])
    teacher = torch.tensor([0.6, 0.3, 0.1])
    good = list_losses(torch.tensor([3.0, 0.0, -1.0]), gold, teacher, Hyper())
    bad = list_losses(torch.tensor([-1.0, 0.0, 3.0]), gold, teacher, Hyper())
    assert set(good) == {"ce", "kl", "bce"}
    for key in good:
        assert good[key] < bad[key]
    assert "ce" not in list_losses(torch.zeros(3), torch.zeros(3), teacher, Hyper())  # no positive: teacher only


SHIPPED_START = ROOT / "models" / "sts-hash-nano"
ENV = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> Caches:
    """Smoke teacher caches of the shipped first stage: both cross-encoder folds (2 steps each) and the STS
    pool's MiniLM and e5 embeddings."""
    root = tmp_path_factory.mktemp("rerank-caches")
    caches = Caches(pool=root / "pool", wikiqa=root / "wikiqa")
    for fold in (0, 1):
        cmd = [sys.executable, "-m", "training.cross_teacher", "--smoke", "--fold", str(fold), "--steps", "2",
               "--cache", str(caches.wikiqa), "--run-dir", str(root / f"fold{fold}")]
        subprocess.run(cmd, cwd=ROOT, check=True, timeout=300, env=ENV, capture_output=True)
    teachers.main(["--smoke", "--cache", str(caches.pool), "--teachers", "minilm,e5"])
    return caches


def shipped_stage(trainer: str) -> Any:
    (stage,) = [s for s in load_recipe("rerank-hash-nano").stages if s.trainer == trainer]
    return stage_settings(stage)


@pytest.mark.slow
def test_first_stage_trains_every_list_type_resumes_and_reloads(caches: Caches, tmp_path: Path) -> None:
    hp: Hyper = shipped_stage("wikiqa-lists")
    out, run_dir = tmp_path / "model", tmp_path / "run"
    rerank.train(hp.smoke(3), SHIPPED_START, out, run_dir, caches.wikiqa, caches.pool, smoke=True)
    summary = rerank.train(hp.smoke(6), SHIPPED_START, out, run_dir, caches.wikiqa, caches.pool, smoke=True)

    assert [h["step"] for h in summary["history"]] == [3, 6]  # one run of 3 steps, then the resumed 3
    assert {"kl", "pooled_kl", "sq_kl", "ict", "iqa_ce", "iqa_kl"} <= set(summary["history"][-1]["loss"])  # every list
    assert any("type" in h["loss"] for h in summary["history"])  # an answered who/when/... question was swapped
    assert summary["hyper"]["cross_weight"] == 1.0 and summary["hyper"]["teacher"] == "minilm+e5"
    assert summary["params"] <= 1_000_000 and 0.0 <= summary["dev_map"] <= 1.0
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt"):
        assert (out / name).is_file(), name
    assert list(caches.wikiqa.glob("e5-passage-train-s-*.npy")), "teacher embeddings are cached"
    assert list(caches.wikiqa.glob("minilm-iqa-train-a-*.npy")), "and the InsuranceQA teacher's"

    model = load_model(out)
    assert model.config.model_type == "bert_hash" and model.config.max_length == 256
    tok = PairTokenizer.from_dir(out, model.config.max_length)
    batch = tok.pad(
        tok.encode_pairs([("who wrote hamlet", "Hamlet is a tragedy by Shakespeare."), ("a", "b")], "only_second")
    )
    with torch.no_grad():
        logits = model(*(torch.from_numpy(x) for x in (batch.input_ids, batch.attention_mask, batch.token_type_ids)))
    assert logits.shape == (2, 1) and torch.isfinite(logits).all()


@pytest.mark.slow
def test_the_recipe_trains_and_a_rerun_ships_the_same_weights(caches: Caches, tmp_path: Path) -> None:
    """`python -m training.train rerank-hash-nano` (make train-rerank's training) on the smoke budget."""
    out, work = tmp_path / "model", tmp_path / "work"
    cmd = [sys.executable, "-m", "training.train", "rerank-hash-nano", "--smoke", "--out", str(out), "--work",
           str(work), "--pool-cache", str(caches.pool), "--wikiqa-cache", str(caches.wikiqa)]
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=600, env=ENV)
    record = json.loads((out / "training.json").read_text())
    assert record["hyper"]["insuranceqa_groups"] == 1 and record["hyper"]["type_contrast_groups"] == 2  # smoke
    assert {"iqa_ce", "iqa_kl", "kl"} <= set(record["history"][-1]["loss"])
    assert (work / "rerank-v1-iqa" / "model" / "training.json").is_file()
    assert (out / "model.onnx").is_file() and (out / "model.int8.onnx").is_file()
    weights = (out / "model.safetensors").read_bytes()

    subprocess.run(cmd, cwd=ROOT, check=True, timeout=600, env=ENV)  # the stage is done: nothing retrains
    assert (out / "model.safetensors").read_bytes() == weights
