"""Average the weights of several fine-tunes of one model (a "model soup", Wortsman et al. 2022).

    python -m training.soup --out DIR MODEL_DIR MODEL_DIR [...]

Runs that start from the same weights and are trained briefly with small steps stay in one basin, so the
mean of their weights scores like an ensemble of them at the cost of one model. The first directory gives
the config and tokenizer files; every directory must have the same tensor names and shapes.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from app.modeling.checkpoint import WEIGHTS_FILE as WEIGHTS


def average_weights(model_dirs: list[Path]) -> dict[str, np.ndarray]:
    tensors = [load_file(str(d / WEIGHTS)) for d in model_dirs]
    names = set(tensors[0])
    for d, t in zip(model_dirs, tensors, strict=True):
        if set(t) != names or any(t[k].shape != tensors[0][k].shape for k in names):
            raise ValueError(f"{d} does not have the tensors of {model_dirs[0]}")
    return {k: np.mean([t[k] for t in tensors], axis=0).astype(tensors[0][k].dtype) for k in sorted(names)}


def soup(model_dirs: list[Path], out: Path) -> None:
    """Write out/ = the first directory's files with the averaged weights (ONNX files are not copied)."""
    if len(model_dirs) < 2:
        raise ValueError("a soup needs at least two model directories")
    weights = average_weights(model_dirs)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(model_dirs[0], out, ignore=shutil.ignore_patterns("*.onnx", "eval.json", "MODEL_CARD.md"))
    save_file(weights, str(out / WEIGHTS), metadata={"format": "pt"})
    (out / "soup.json").write_text(json.dumps({"ingredients": [str(d) for d in model_dirs]}, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("model_dirs", type=Path, nargs="+")
    args = ap.parse_args(argv)
    soup(args.model_dirs, args.out)
    print(f"soup of {len(args.model_dirs)} models: {args.out}")


if __name__ == "__main__":
    main()
