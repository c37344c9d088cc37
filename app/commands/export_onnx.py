"""`hashrank export-onnx MODEL_DIR`: write model.onnx + model.int8.onnx next to model.safetensors and check them.

int8 fixes its activation scales on calibration pairs from training splits: by default STS-B and WikiQA train
from ../shared/data next to the checkout; `--calibration-data DIR` (same layout) or `--calibration FILE` (JSON
lines of pairs, as `hashrank score` reads) for another source.

$ hashrank export-onnx models/sts-hash-nano
models/sts-hash-nano/model.onnx       3.92 MB
models/sts-hash-nano/model.int8.onnx  1.06 MB
parity vs torch on 8 pairs: onnx max |dlogit| 2.6e-06, onnx-int8 max |dlogit| 1.3e-01
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("export-onnx", help="export model.onnx and model.int8.onnx (needs torch)")
    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="directory with model.safetensors")
    parser.add_argument("--no-int8", action="store_true", help="skip model.int8.onnx")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--calibration-data", type=Path, metavar="DIR", help="shared/data folder (STS-B, WikiQA train)")
    source.add_argument("--calibration", type=Path, metavar="FILE", help="JSON lines of training pairs for int8")


def run(args: argparse.Namespace) -> int:
    from app.modeling.onnx_export import export_onnx, verify_export  # imports torch
    from app.modeling.quantize import calibration_pairs

    calibration = None
    if args.calibration is not None:
        from app.commands.score import read_pairs

        with args.calibration.open(encoding="utf-8") as lines:
            calibration = read_pairs(lines)
    elif args.calibration_data is not None:
        calibration = calibration_pairs(args.calibration_data)
    written = export_onnx(args.model_dir, int8=not args.no_int8, calibration=calibration)
    width = max(len(str(p)) for p in written)
    for path in written:
        print(f"{str(path):{width}}  {path.stat().st_size / 1e6:.2f} MB")
    report = verify_export(args.model_dir)
    print(
        f"parity vs torch on {report.pairs} pairs: "
        + ", ".join(f"{k} max |dlogit| {v:.1e}" for k, v in report.max_delta.items())
    )
    return 0
