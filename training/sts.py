"""The recipe of models/sts-hash-nano: hash table from MiniLM PCA -> distil on teacher-labelled pairs ->
fine-tune on STS-B train gold / 5 -> keep the best STS-B dev Spearman -> save + ONNX export.

    python -m training.sts --out models/sts-hash-nano              # full recipe (teacher cache built first)
    python -m training.sts --out /tmp/m --smoke                     # tiny data, a few steps
    python -m training.sts --out DIR --distill-pairs 0              # no distillation (early model)

Stopped runs resume from run_dir (default training/runs/sts-<seed>); the teacher cache is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from app.modeling.bert_hash import BertHashForSequenceClassification
from app.modeling.checkpoint import load_model, save_model
from app.modeling.config import PRESETS
from app.modeling.tokenizer import PairTokenizer
from training import data, teachers
from training.hash_init import init_hash_table, minilm_dir, tie_query_key
from training.loop import Stage, encode, train_stage
from training.pairs import Teacher, distill_pairs

TRAIN_MAX_LENGTH = 128  # STS pairs are ~30 tokens; the shipped config keeps max_length 512


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--run-dir", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=teachers.CACHE_DIR)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", default="nano", choices=sorted(PRESETS))
    ap.add_argument("--heads", type=int, default=None, help="attention heads (default: the preset's)")
    ap.add_argument("--init", default="pca", choices=("pca", "random"))
    ap.add_argument("--init-from", type=Path, default=None, help="start from this saved model directory instead")
    ap.add_argument("--qk-init", type=float, default=0.08, help="std of the tied W_query = W_key init (0: BERT's)")
    ap.add_argument("--teachers", default="minilm", help="comma list of cached teachers to average: minilm, e5")
    ap.add_argument("--distill-pairs", type=int, default=150_000, help="0 skips distillation")
    ap.add_argument("--neighbours", type=int, default=4)
    ap.add_argument("--random-pairs", type=int, default=100_000)
    ap.add_argument("--distill-epochs", type=float, default=1.0)
    ap.add_argument("--distill-minutes", type=float, default=None, help="wall-time cap of distillation")
    ap.add_argument("--distill-max-steps", type=int, default=None,
                    help="step cap of distillation: the learning-rate schedule ends there")
    ap.add_argument("--distill-stop-at", type=int, default=None,
                    help="stop distillation at this step of its full schedule (replays a --distill-minutes cap)")
    ap.add_argument("--gold-minutes", type=float, default=0.0,
                    help="wall-time cap of a first stage on every training set's own labels (0 skips it)")
    ap.add_argument("--wait-minutes", type=float, default=0.0,
                    help="wait up to this long for a teacher cache that is still being written")
    ap.add_argument("--dropout", type=float, default=0.0, help="hidden + attention dropout while training")
    ap.add_argument("--distill-lr", type=float, default=1e-3)
    ap.add_argument("--ft-epochs", type=float, default=2.0)
    ap.add_argument("--ft-lr", type=float, default=3e-4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="tiny data and a few steps (tests)")
    ap.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    return ap.parse_args(argv)


def gold(pairs: list[data.Pair]) -> tuple[list[tuple[str, str]], np.ndarray]:
    return [(p.a, p.b) for p in pairs], np.array([p.score / 5.0 for p in pairs], dtype=np.float32)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    run_dir = args.run_dir or Path(__file__).resolve().parent / "runs" / f"sts-{args.seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = (run_dir / "train.log").open("a", encoding="utf-8")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    t_start = time.time()
    tok_dir = minilm_dir()
    tok = PairTokenizer.from_dir(tok_dir, TRAIN_MAX_LENGTH)
    stsb_train, stsb_dev = data.sts_b("train"), data.sts_b("dev")
    if args.smoke:
        stsb_train, stsb_dev = stsb_train[:512], stsb_dev[:128]
    dev_text, dev_y = gold(stsb_dev)
    dev = (encode(tok, dev_text), dev_y)

    cfg = PRESETS[args.preset].replace(hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout)
    if args.heads is not None:  # same weights split into more heads: an --init-from model keeps every tensor
        cfg = cfg.replace(num_attention_heads=args.heads)
    model = BertHashForSequenceClassification(cfg)
    kept = None
    if args.init_from:  # continue a previous run's saved model (a second round of distillation)
        model.load_state_dict(load_model(args.init_from).state_dict())
        args.init = f"from {args.init_from}"
    else:
        kept = init_hash_table(model, args.init)
        if args.qk_init > 0:
            tie_query_key(model, args.qk_init)
    log(f"model {args.preset}: {model.num_parameters():,} params; init {args.init}"
        + (f" (PCA keeps {kept:.1%} of variance)" if kept else ""))
    report: dict = {"seed": args.seed, "params": model.num_parameters(), "init": args.init, "args": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}

    if args.gold_minutes > 0:
        text, y = data.gold_stage_pairs(args.seed)
        if args.smoke:
            text, y = text[:2000], y[:2000]
        log(f"gold stage: {len(text)} pairs from every training set's own labels")
        stage = Stage("gold", 1.0, args.distill_lr, batch_size=32, eval_every=40 if args.smoke else 500,
                      max_steps=40 if args.smoke else None, max_seconds=args.gold_minutes * 60)
        report["gold"] = train_stage(model, tok, (encode(tok, text), np.array(y, dtype=np.float32)), dev, stage,
                                     run_dir, args.seed, log)

    if args.distill_pairs > 0:
        wait_for_teachers(args, log)
        t0 = time.time()
        pairs_path = run_dir / "distill_pairs.json"
        if pairs_path.is_file():
            blob = json.loads(pairs_path.read_text())
            text, y = [tuple(p) for p in blob["pairs"]], np.array(blob["labels"], dtype=np.float32)
        else:
            text, y = build_distill_set(args, log)
            pairs_path.write_text(json.dumps({"pairs": text, "labels": y.tolist()}))
        log(f"distill set: {len(text)} pairs, label mean {y.mean():.3f}, histogram "
            f"{np.histogram(y, bins=5, range=(0, 1))[0].tolist()} ({time.time() - t0:.0f}s)")
        stage = Stage("distill", args.distill_epochs, args.distill_lr, batch_size=32,
                      eval_every=60 if args.smoke else 500, max_steps=60 if args.smoke else args.distill_max_steps,
                      max_seconds=args.distill_minutes * 60 if args.distill_minutes else None,
                      stop_at=None if args.smoke else args.distill_stop_at)
        report["distill"] = train_stage(model, tok, (encode(tok, text), y), dev, stage, run_dir, args.seed, log)
        report["distill"]["pairs"] = len(text)

    ft_text, ft_y = gold(stsb_train)
    stage = Stage("finetune", args.ft_epochs, args.ft_lr, batch_size=32,
                  eval_every=30 if args.smoke else 180, max_steps=30 if args.smoke else None)
    report["finetune"] = train_stage(model, tok, (encode(tok, ft_text), ft_y), dev, stage, run_dir, args.seed, log)
    report["wall_seconds"] = round(time.time() - t_start, 1)

    model.eval()
    save_model(model, args.out, tok_dir)
    if not args.no_export:
        from app.modeling.onnx_export import export_onnx

        export_onnx(args.out)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    log(f"saved {args.out}: {json.dumps(report)}")
    return report


def wait_for_teachers(args: argparse.Namespace, log) -> None:
    """Block until every teacher's cache file exists (training.teachers may run alongside), up to --wait-minutes."""
    paths = [args.cache / f"{n}.npy" for n in args.teachers.split(",")]
    deadline = time.time() + args.wait_minutes * 60
    while not all(p.is_file() for p in paths) and time.time() < deadline:
        log(f"waiting for teacher cache {[str(p) for p in paths if not p.is_file()]}")
        time.sleep(30)
    time.sleep(2)  # np.save may still be flushing


def build_distill_set(args: argparse.Namespace, log) -> tuple[list[tuple[str, str]], np.ndarray]:
    names = tuple(args.teachers.split(","))
    pool_meta = json.loads((args.cache / "pool.json").read_text())
    sets = teachers.sample_pairs(pool_meta["seed"], {k: v for k, v in pool_meta["sizes"].items()})
    teacher = Teacher.from_cache(args.cache, pool_meta["sentences"], sets["stsb"], names)
    n = args.distill_pairs
    text, y = distill_pairs(teacher, sets, args.neighbours, args.random_pairs, n, args.seed)
    log(f"teachers {names}: rows {[len(e) for e in teacher.embeddings]} of {len(teacher.index)}; "
        f"z-stats {teacher.stats}")
    return text, y


if __name__ == "__main__":
    main()
