"""Smoke runs of the STS recipe (training/recipes/sts-hash-nano.toml): tiny teacher pool, a few steps per round."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.modeling.checkpoint import load_model
from app.scorer import Scorer
from training.train import RECIPES_DIR, load_recipe, stage_settings


@pytest.mark.slow
def test_sts_recipe_smoke(tmp_path: Path, data_dir: Path) -> None:
    from training import sts, teachers

    cache, run_dir, out = tmp_path / "cache", tmp_path / "run", tmp_path / "model"
    teachers.main(["--smoke", "--cache", str(cache), "--teachers", "minilm"])
    assert np.load(cache / "minilm.npy").shape[1] == 384

    argv = ["--out", str(out), "--smoke", "--cache", str(cache), "--run-dir", str(run_dir), "--teachers", "minilm",
            "--distill-pairs", "2000", "--random-pairs", "2000", "--no-export"]
    report = sts.main(argv)

    assert report["params"] <= 1_000_000
    for stage in ("distill", "finetune"):
        assert report[stage]["last_loss"] < report[stage]["first_loss"], report[stage]
    labels = json.loads((run_dir / "distill_pairs.json").read_text())["labels"]
    assert min(labels) >= 0.0 and max(labels) <= 1.0 and 0.2 < float(np.mean(labels)) < 0.8

    model = load_model(out)
    assert model.num_parameters() == report["params"]
    scores = Scorer.load(out, "torch").score([("A man plays a guitar.", "A man is playing a guitar."),
                                              ("A man plays a guitar.", "The stock market fell sharply.")])
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))

    # A stopped run resumes: rerunning finds the finished stages' checkpoints and redoes no steps.
    again = sts.main(argv)
    assert again["finetune"]["steps"] == report["finetune"]["steps"]


def two_round_recipe(tmp_path: Path) -> Path:
    """The shipped STS recipe file cut to its first two stages (the rest repeat the same trainer)."""
    text = (RECIPES_DIR / "sts-hash-nano.toml").read_text()
    head, *stages = text.split("[[stage]]")
    head = head.replace('pool_teachers = ["minilm", "e5"]', 'pool_teachers = ["minilm"]')  # all rounds 1-2 read
    path = tmp_path / "sts-two-rounds.toml"
    path.write_text(head + "".join("[[stage]]" + stage for stage in stages[:2]))
    return path


@pytest.mark.slow
def test_sts_recipe_chains_rounds_and_resumes(tmp_path: Path, data_dir: Path) -> None:
    """`python -m training.train sts-hash-nano` (make train-sts): round 2 starts from round 1's model; a re-run
    skips both."""
    from training import train

    argv = [str(two_round_recipe(tmp_path)), "--out", str(tmp_path / "model"), "--work", str(tmp_path / "work"),
            "--pool-cache", str(tmp_path / "cache"), "--smoke"]
    train.main(argv)
    second = json.loads((tmp_path / "work" / "round-2" / "run" / "report.json").read_text())
    assert second["init"] == f"from {tmp_path / 'work' / 'round-1' / 'model'}"
    assert (tmp_path / "model" / "model.onnx").is_file() and (tmp_path / "model" / "model.int8.onnx").is_file()
    first_weights = (tmp_path / "model" / "model.safetensors").read_bytes()

    train.main(argv)  # both rounds are done: nothing retrains, the same weights are shipped again
    assert (tmp_path / "model" / "model.safetensors").read_bytes() == first_weights


def test_every_sts_round_gives_training_sts_known_options() -> None:
    from training import sts

    recipe = load_recipe("sts-hash-nano")
    assert [s.trainer for s in recipe.stages] == ["sts"] * 6 and recipe.stages[0].init_from is None
    for number, stage in enumerate(recipe.stages, start=1):
        args = sts.parse_args(["--out", "x", *stage_settings(stage)])
        assert args.seed == number - 1 and args.distill_pairs > 0  # round N keeps seed N-1, as it shipped
