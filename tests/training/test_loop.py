"""training.loop's stage schedule: stop_at replays a wall-time cap without shortening the schedule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from app.modeling.bert_hash import BertHashForSequenceClassification
from app.modeling.config import PRESETS
from app.modeling.tokenizer import PairTokenizer
from training.loop import Stage, encode, train_stage

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "sts-hash-nano"


def _fixture() -> tuple[BertHashForSequenceClassification, PairTokenizer, tuple, tuple]:
    torch.manual_seed(0)
    model = BertHashForSequenceClassification(PRESETS["femto"].replace(max_length=32))
    tok = PairTokenizer.from_dir(MODEL_DIR, 32)
    words = ["a cat sits", "the dog runs", "rain falls today", "stocks fell sharply", "he plays guitar"]
    pairs = [(a, b) for a in words for b in words]
    labels = np.array([1.0 if a == b else 0.1 for a, b in pairs], dtype=np.float32)
    data = (encode(tok, pairs), labels)
    return model, tok, data, data


def _lr_after(run_dir: Path) -> float:
    state = torch.load(run_dir / "distill.pt", weights_only=False)
    return float(state["sched"]["_last_lr"][0])


def test_stop_at_keeps_the_full_schedule(tmp_path: Path) -> None:
    model, tok, data, dev = _fixture()  # 25 pairs, batch 5: 5 steps per epoch, 20 planned
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    stage = Stage("distill", epochs=4, lr=1e-3, batch_size=5, warmup=0.05, eval_every=100, stop_at=7)
    stats = train_stage(model, tok, data, dev, stage, tmp_path / "a", seed=0, log=lambda _: None)
    assert (stats["steps"], stats["planned_steps"]) == (7, 20)
    # Linear decay over 20 planned steps (1 warm-up step): 13/19 of the peak is left after step 7.
    assert np.isclose(_lr_after(tmp_path / "a"), 1e-3 * 13 / 19)

    capped = Stage("distill", epochs=4, lr=1e-3, batch_size=5, warmup=0.05, eval_every=100, max_steps=7)
    stats = train_stage(model, tok, data, dev, capped, tmp_path / "b", seed=0, log=lambda _: None)
    assert (stats["steps"], stats["planned_steps"]) == (7, 7)
    assert _lr_after(tmp_path / "b") == 0.0  # max_steps ends the schedule itself

    # A re-run finds the stop reached and only reloads the best weights.
    again = train_stage(model, tok, data, dev, stage, tmp_path / "a", seed=0, log=lambda _: None)
    assert again["steps"] == 7
