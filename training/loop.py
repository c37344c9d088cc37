"""A small, resumable trainer for a one-logit cross-encoder on (pair, soft label in [0, 1]) data.

Loss: BCE-with-logits against the soft label (the sentence-transformers CrossEncoder default).
Checkpoints (model, optimiser, step, best dev score, RNG) go to run_dir/<stage>.pt every `ckpt_every`
steps and at each evaluation, so a stopped run resumes from the last one.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch.nn import functional as F

from app.modeling.bert_hash import BertHashForSequenceClassification
from app.modeling.tokenizer import EncodedPair, PairTokenizer


@dataclass(frozen=True)
class Stage:
    name: str
    epochs: float
    lr: float
    batch_size: int = 64
    warmup: float = 0.05  # fraction of steps with a linear warm-up, then linear decay to 0
    weight_decay: float = 0.01
    eval_every: int = 500  # steps between dev evaluations (and checkpoints)
    max_steps: int | None = None  # caps the stage (smoke runs)
    max_seconds: float | None = None  # wall-time budget: stop early (after an evaluation) once it is spent
    # Stop (after an evaluation) at this step while the learning-rate schedule still plans the full stage:
    # replays a run whose wall-time budget bound there, independently of the machine's speed. max_steps,
    # by contrast, shortens the schedule itself.
    stop_at: int | None = None


def encode(tok: PairTokenizer, pairs: list[tuple[str, str]]) -> list[EncodedPair]:
    return tok.encode_pairs(pairs, "longest_first")


def batches(encoded: list[EncodedPair], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length: sort random chunks of 50 batches by length, then shuffle batches."""
    idx = list(range(len(encoded)))
    rng.shuffle(idx)
    chunk = batch_size * 50
    out = []
    for s in range(0, len(idx), chunk):
        part = sorted(idx[s : s + chunk], key=lambda i: len(encoded[i]))
        out.extend(part[j : j + batch_size] for j in range(0, len(part), batch_size))
    rng.shuffle(out)
    return out


def to_tensors(tok: PairTokenizer, rows: list[EncodedPair]) -> tuple[torch.Tensor, ...]:
    b = tok.pad(rows)
    return tuple(torch.from_numpy(x) for x in (b.input_ids, b.attention_mask, b.token_type_ids))


@torch.no_grad()
def predict(model: BertHashForSequenceClassification, tok: PairTokenizer, encoded: list[EncodedPair]) -> np.ndarray:
    model.eval()
    out = np.empty(len(encoded), dtype=np.float32)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    for s in range(0, len(order), 256):
        rows = order[s : s + 256]
        out[rows] = model(*to_tensors(tok, [encoded[i] for i in rows]))[:, 0].numpy()
    return out


def dev_spearman(
    model: BertHashForSequenceClassification, tok: PairTokenizer, dev: tuple[list[EncodedPair], np.ndarray]
) -> float:
    return float(spearmanr(predict(model, tok, dev[0]), dev[1]).statistic)


def train_stage(
    model: BertHashForSequenceClassification,
    tok: PairTokenizer,
    data: tuple[list[EncodedPair], np.ndarray],
    dev: tuple[list[EncodedPair], np.ndarray],
    stage: Stage,
    run_dir: Path,
    seed: int,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Train one stage; keep the weights with the best dev Spearman in run_dir/<stage>.best.pt. Returns stats."""
    encoded, labels = data
    steps_per_epoch = math.ceil(len(encoded) / stage.batch_size)
    total = int(steps_per_epoch * stage.epochs)
    if stage.max_steps is not None:
        total = min(total, stage.max_steps)
    opt = torch.optim.AdamW(model.parameters(), lr=stage.lr, weight_decay=stage.weight_decay)
    warm = max(1, int(total * stage.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    ckpt, best_path = run_dir / f"{stage.name}.pt", run_dir / f"{stage.name}.best.pt"
    step, best, elapsed, losses = 0, -1.0, 0.0, []
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, best, elapsed = state["step"], state["best"], state["elapsed"]
        torch.set_rng_state(state["torch_rng"])
        log(f"[{stage.name}] resumed at step {step}/{total} (best dev {best:.4f})")
    end = total if stage.stop_at is None else min(total, stage.stop_at)
    out_of_time = stage.max_seconds is not None and elapsed >= stage.max_seconds
    if step >= end or out_of_time:
        model.load_state_dict(torch.load(best_path, weights_only=True))
        return {"steps": step, "planned_steps": total, "best_dev_spearman": best, "seconds": elapsed}

    epoch_of = lambda s: s // steps_per_epoch  # noqa: E731
    plan = batches(encoded, stage.batch_size, random.Random(seed * 1000 + epoch_of(step)))
    model.train()
    t0 = time.time() - elapsed
    while step < end:
        e, k = epoch_of(step), step % steps_per_epoch
        if k == 0 and step > 0:
            plan = batches(encoded, stage.batch_size, random.Random(seed * 1000 + e))
        rows = plan[k]
        logits = model(*to_tensors(tok, [encoded[i] for i in rows]))[:, 0]
        loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(labels[rows]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % stage.eval_every == 0 or step == end or (
            stage.max_seconds is not None and time.time() - t0 >= stage.max_seconds
        ):
            score = dev_spearman(model, tok, dev)
            model.train()
            if score > best:
                best = score
                torch.save(model.state_dict(), best_path)
            elapsed = time.time() - t0
            log(f"[{stage.name}] step {step}/{total} loss {np.mean(losses[-stage.eval_every:]):.4f} "
                f"dev {score:.4f} best {best:.4f} {elapsed:.0f}s")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "step": step, "best": best, "elapsed": elapsed, "torch_rng": torch.get_rng_state()}, ckpt)
            if stage.max_seconds is not None and elapsed >= stage.max_seconds and step < total:
                log(f"[{stage.name}] wall-time budget {stage.max_seconds:.0f}s spent at step {step}/{total}")
                break
    model.load_state_dict(torch.load(best_path, weights_only=True))
    w = max(1, min(20, len(losses) // 4))  # mean loss of the first and last steps of this session
    return {"steps": step, "planned_steps": total, "best_dev_spearman": best, "seconds": round(time.time() - t0, 1),
            "first_loss": float(np.mean(losses[:w])) if losses else float("nan"),
            "last_loss": float(np.mean(losses[-w:])) if losses else float("nan")}
