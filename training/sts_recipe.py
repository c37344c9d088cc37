"""The whole recipe of models/sts-hash-nano in one command: teacher cache, then the rounds below in order.

    python -m training.sts_recipe --out models/sts-hash-nano          # (make train-sts)
    python -m training.sts_recipe --out /tmp/m --smoke                 # tiny data, a few steps per round

Round 1 trains from the MiniLM-PCA init; each later round starts from the previous round's model, distils
on a fresh sample of teacher-labelled pairs (its own seed), then fine-tunes on STS-B train again. A cross-
encoder this small sits on a long plateau before it learns to match words across the pair, so several short
rounds with fresh pairs got further than one long one in the CPU we had. Each round's model goes to
<work>/round-N/model and is skipped on a re-run once its report exists, so a stopped recipe resumes (inside
a round, training.sts resumes from its own checkpoints). The wall-time caps of the shipped run are given
here as the step counts they stopped at, so the recipe does not depend on the machine's speed.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from training import sts, teachers

# (teachers the round labels with, extra arguments of training.sts); seeds are the round numbers - 1.
ROUNDS: list[tuple[str, list[str]]] = [
    ("minilm", ["--distill-pairs", "150000", "--neighbours", "4", "--random-pairs", "100000"]),
    ("minilm", ["--distill-pairs", "130000", "--neighbours", "8", "--random-pairs", "120000", "--distill-lr", "5e-4"]),
    ("minilm", ["--distill-pairs", "130000", "--neighbours", "8", "--random-pairs", "120000", "--distill-lr", "5e-4"]),
    ("minilm", ["--distill-pairs", "80000", "--neighbours", "8", "--random-pairs", "120000", "--distill-lr", "5e-4",
                "--distill-stop-at", "2277"]),
    ("minilm,e5", ["--distill-pairs", "400000", "--neighbours", "8", "--random-pairs", "200000",
                   "--distill-lr", "5e-4", "--distill-max-steps", "12000"]),
    ("minilm,e5", ["--distill-pairs", "400000", "--neighbours", "8", "--random-pairs", "200000",
                   "--distill-lr", "5e-4", "--distill-max-steps", "12000"]),
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / "runs" / "sts-recipe")
    ap.add_argument("--cache", type=Path, default=teachers.CACHE_DIR)
    ap.add_argument("--rounds", type=int, default=len(ROUNDS), help="stop after this many rounds")
    ap.add_argument("--smoke", action="store_true", help="tiny teacher pool and a few steps per round")
    args = ap.parse_args(argv)
    t0 = time.time()
    used = sorted({name for names, _ in ROUNDS[: args.rounds] for name in names.split(",")})
    teachers.main(["--cache", str(args.cache), "--teachers", ",".join(used)] + (["--smoke"] if args.smoke else []))
    previous: Path | None = None
    for number, (names, extra) in enumerate(ROUNDS[: args.rounds], start=1):
        round_dir = args.work / f"round-{number}"
        model_dir = round_dir / "model"
        if not (round_dir / "run" / "report.json").is_file():
            round_args = ["--out", str(model_dir), "--run-dir", str(round_dir / "run"), "--cache", str(args.cache),
                          "--seed", str(number - 1), "--teachers", names, "--no-export", *extra]
            if previous is not None:
                round_args += ["--init-from", str(previous)]
            if args.smoke:
                round_args.append("--smoke")
            sts.main(round_args)
        previous = model_dir
    assert previous is not None
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(previous, args.out)
    from app.modeling.onnx_export import export_onnx

    export_onnx(args.out)
    print(f"recipe done in {time.time() - t0:.0f}s: {args.out}", flush=True)


if __name__ == "__main__":
    main()
