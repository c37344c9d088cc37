"""`hashrank eval --model DIR [--int8] [--write]`: benchmark a model directory (see app.evaluation).

Example (models/sts-hash-nano, 1 thread):
    $ hashrank eval --model models/sts-hash-nano --int8
    metric                   fp32     int8
    stsb_dev_spearman        0.8xxx   0.8xxx
    ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.runtime.base import Backend

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EVAL_FILE = "eval.json"


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    configure(subparsers.add_parser("eval", help="STS-B / SICK-R / WikiQA metrics of a model directory"))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="model directory (config.json, model.onnx, ...)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared/data folder")
    parser.add_argument("--int8", action="store_true", help="also score with model.int8.onnx")
    parser.add_argument("--torch", action="store_true", help="also score with the PyTorch runtime")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", action="store_true", help=f"write MODEL/{EVAL_FILE}")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from app.evaluation import evaluate  # keeps `hashrank --help` fast

    backends: list[tuple[str, Backend]] = [("fp32", "onnx")]
    if args.int8:
        backends.append(("int8", "onnx-int8"))
    if args.torch:
        backends.append(("torch", "torch"))
    results = {name: evaluate(args.model, args.data_dir, backend, args.threads) for name, backend in backends}
    if "int8" in results:
        results["int8_minus_fp32"] = {
            k: round(results["int8"][k] - results["fp32"][k], 4)
            for k in results["fp32"]
            if k.startswith(("stsb", "sick", "wikiqa_test_m"))
        }
    names = list(results)
    print(f"{'metric':26}" + "".join(f"{n:>17}" for n in names))
    for key in results["fp32"]:
        print(f"{key:26}" + "".join(f"{results[n].get(key, ''):>17}" for n in names))
    if args.write:
        (Path(args.model) / EVAL_FILE).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hashrank eval")
    configure(parser)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
