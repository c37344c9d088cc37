"""The whole recipe of models/rerank-hash-nano in one command: fine-tunes of sts-hash-nano, then their soup.

    python -m training.rerank_recipe --out models/rerank-hash-nano     # (make train-rerank)
    python -m training.rerank_recipe --out /tmp/m --smoke              # 40 questions, a few steps per run

Every run starts from the shipped STS model (models/sts-hash-nano, which `make train-sts` reproduces) with the
arguments in RUNS (each its own seed); the mean of their weights ships (training/soup.py). A finished run is
skipped on a re-run and a stopped one resumes from its checkpoint, so the recipe resumes too. Then the soup is
exported to ONNX and evaluated on WikiQA test (eval.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from training import rerank, soup
from training.rerank_data import ROOT

STS_MODEL = ROOT / "models" / "sts-hash-nano"
# The teachers (MiniLM + e5 on WikiQA train; their query-side embeddings of the STS pool) are cached by
# training.rerank itself; the STS pool cache comes from `make train-sts` (training.teachers).
COMMON = ["--teacher", "minilm+e5", "--e5-weight", "1.0", "--ce-weight", "0.3", "--pooled-teacher",
          "--sentence-query-groups", "3", "--ema-decay", "0.998", "--dropout", "0", "--steps", "2400"]
RUNS: list[list[str]] = [[*COMMON, "--seed", "4"], [*COMMON, "--seed", "5"]]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=rerank.RUNS_DIR / "recipe")
    ap.add_argument("--init-from", type=Path, default=STS_MODEL)
    ap.add_argument("--cache", type=Path, default=None, help="teacher embedding cache of training.rerank")
    ap.add_argument("--pool-cache", type=Path, default=None, help="the STS recipe's teacher cache")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    caches = [*(["--cache", str(args.cache)] if args.cache else []),
              *(["--pool-cache", str(args.pool_cache)] if args.pool_cache else [])]
    t0 = time.time()
    ingredients = []
    for number, run_args in enumerate(RUNS, start=1):
        model_dir = args.work / f"run-{number}" / "model"
        if not (model_dir / "training.json").is_file():
            smoke = ["--smoke", "--steps", "4"] if args.smoke else []
            rerank.main(["--out", str(model_dir), "--run-dir", str(args.work / f"run-{number}" / "ckpt"),
                         "--init-from", str(args.init_from), "--no-export", *run_args, *caches, *smoke])
        ingredients.append(model_dir)
    soup.soup(ingredients, args.out)
    runs = [json.loads((d / "training.json").read_text()) for d in ingredients]
    summary = {**runs[0], "runs": runs, "soup_of": [str(d) for d in ingredients]}
    (args.out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    from app.modeling.onnx_export import export_onnx
    from training.rerank_eval import evaluate

    export_onnx(args.out)
    evaluate(args.out, smoke=args.smoke)
    print(f"recipe done in {time.time() - t0:.0f}s: {args.out}", flush=True)


if __name__ == "__main__":
    main()
