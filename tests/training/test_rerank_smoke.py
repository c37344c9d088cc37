"""The reranker recipe end to end on 40 WikiQA train questions: train, checkpoint, resume, save, reload."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training.rerank import Hyper, list_losses
from training.rerank_data import average_precision, reciprocal_rank

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


def _run(out: Path, run_dir: Path, cache: Path, steps: int) -> None:
    cmd = [sys.executable, "-m", "training.rerank", "--out", str(out), "--smoke", "--steps", str(steps), "--no-export"]
    # The shipped recipe's paths: teacher KL on question, pooled and sentence-query lists, answer-type contrast
    # and rule, weight averaging.
    cmd += ["--teacher", "minilm", "--pooled-teacher", "--ema-decay", "0.9", "--dropout", "0"]
    cmd += ["--sentence-query-groups", "1", "--pool-cache", str(cache / "pool"), "--type-contrast-groups", "2"]
    cmd += ["--type-rule-weight", "2", "--typed-share", "0.5"]
    cmd += ["--run-dir", str(run_dir), "--cache", str(cache)]
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


@pytest.mark.slow
def test_smoke_train_resume_and_reload(tmp_path: Path) -> None:
    out, run_dir, cache = tmp_path / "model", tmp_path / "run", tmp_path / "cache"
    from training import teachers

    teachers.main(["--smoke", "--cache", str(cache / "pool"), "--teachers", "minilm"])  # the STS pool's cache
    _run(out, run_dir, cache, steps=3)
    _run(out, run_dir, cache, steps=6)  # resumes from last.pt at step 3

    summary = json.loads((out / "training.json").read_text())
    assert [h["step"] for h in summary["history"]] == [3, 6]  # one run of 3 steps, then the resumed 3
    assert {"kl", "pooled_kl", "sq_kl", "ict"} <= set(summary["history"][-1]["loss"])  # every list type trained
    assert any("type" in h["loss"] for h in summary["history"])  # an answered who/when/... question was swapped
    assert summary["params"] <= 1_000_000
    assert 0.0 <= summary["dev_map"] <= 1.0
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt"):
        assert (out / name).is_file(), name
    assert list(cache.glob("minilm-train-*.npy")), "teacher embeddings are cached"

    from app.modeling.checkpoint import load_model
    from app.modeling.tokenizer import PairTokenizer

    model = load_model(out)
    assert model.config.model_type == "bert_hash" and model.config.max_length == 256
    tok = PairTokenizer.from_dir(out, model.config.max_length)
    batch = tok.pad(
        tok.encode_pairs([("who wrote hamlet", "Hamlet is a tragedy by Shakespeare."), ("a", "b")], "only_second")
    )
    with torch.no_grad():
        logits = model(*(torch.from_numpy(x) for x in (batch.input_ids, batch.attention_mask, batch.token_type_ids)))
    assert logits.shape == (2, 1) and torch.isfinite(logits).all()

