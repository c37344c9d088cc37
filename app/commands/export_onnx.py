"""`hashrank export-onnx MODEL_DIR`: write model.onnx + model.int8.onnx next to model.safetensors and check them.

$ hashrank export-onnx models/sts-hash-nano
models/sts-hash-nano/model.onnx       3.91 MB
models/sts-hash-nano/model.int8.onnx  1.03 MB
parity vs torch on 8 pairs: onnx max |dlogit| 2.4e-07, onnx-int8 max |dlogit| 1.6e-03
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("export-onnx", help="export model.onnx and model.int8.onnx (needs torch)")
    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="directory with model.safetensors")
    parser.add_argument("--no-int8", action="store_true", help="skip model.int8.onnx")


def run(args: argparse.Namespace) -> int:
    from app.modeling.onnx_export import export_onnx, verify_export  # imports torch

    written = export_onnx(args.model_dir, int8=not args.no_int8)
    width = max(len(str(p)) for p in written)
    for path in written:
        print(f"{str(path):{width}}  {path.stat().st_size / 1e6:.2f} MB")
    report = verify_export(args.model_dir)
    print(
        f"parity vs torch on {report.pairs} pairs: "
        + ", ".join(f"{k} max |dlogit| {v:.1e}" for k, v in report.max_delta.items())
    )
    return 0
