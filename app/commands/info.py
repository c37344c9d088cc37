"""`hashrank info --model DIR`: the architecture and files of a model directory as JSON (no torch needed).

$ hashrank info --model models/sts-hash-nano
{"model_dir": "models/sts-hash-nano", "model_type": "bert_hash", "parameters": 969761, ...}
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from app.errors import ModelLoadError
from app.modeling.config import ModelConfig

_FILES = ("config.json", "model.safetensors", "model.onnx", "model.int8.onnx", "tokenizer.json")


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("info", help="print a model directory's architecture as JSON")
    parser.add_argument("--model", type=Path, required=True, help="model directory")


def run(args: argparse.Namespace) -> int:
    print(json.dumps(describe(args.model), indent=2))
    return 0


def describe(model_dir: Path) -> dict[str, Any]:
    cfg = ModelConfig.load(model_dir)
    stored = count_parameters(model_dir / "model.safetensors")
    return {
        "model_dir": str(model_dir),
        "model_type": cfg.model_type,
        "parameters": stored,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "intermediate_size": cfg.intermediate_size,
        "projections": cfg.projections,
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "max_length": cfg.max_length,
        "num_labels": cfg.num_labels,
        "activation": cfg.activation,
        # Bytes per file, null when absent: tells at a glance whether export-onnx has been run.
        "files": {name: _size(model_dir / name) for name in _FILES},
    }


def count_parameters(path: Path) -> int:
    """Float tensors stored in model.safetensors, read from the header only."""
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing {path.name}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            names = f.keys()
            slices = [f.get_slice(name) for name in names]
            # Integer tensors are buffers some BERT checkpoints carry (position_ids), not parameters.
            return sum(math.prod(s.get_shape()) for s in slices if _is_float(s.get_dtype()))
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{path}: not a readable safetensors file ({exc})") from exc


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("F", "BF"))


def _size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None
