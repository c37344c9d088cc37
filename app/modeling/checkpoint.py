"""Load and save model directories in the Hugging Face layout of the published BERT Hash checkpoints.

A directory holds config.json, model.safetensors and the tokenizer files; model.onnx / model.int8.onnx
are added by app.modeling.onnx_export. Keys may come with or without the `bert.` prefix.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from app.errors import ModelLoadError
from app.modeling.bert_hash import BertHashForSequenceClassification
from app.modeling.config import ModelConfig

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
# Buffers that older Hugging Face BERT checkpoints store; they carry no weights.
_IGNORED_SUFFIXES = ("embeddings.position_ids", "embeddings.token_type_ids")
# Trust-remote-code shims so transformers/sentence-transformers load our directories too.
_REMOTE_CODE_DIR = Path(__file__).with_name("remote_code")


def _canonical_key(key: str) -> str:
    """Published base checkpoints may drop the `bert.` prefix; other keys stay as stored, so an
    unexpected one (e.g. an MLM head's `cls.predictions.bias`) is reported under its own name."""
    if key.startswith(("embeddings.", "encoder.", "pooler.")):
        return "bert." + key
    return key


def read_state_dict(model_dir: Path) -> dict[str, np.ndarray]:
    path = model_dir / WEIGHTS_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing {WEIGHTS_FILE}")
    try:
        raw = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: not a readable safetensors file ({exc})") from exc
    return {_canonical_key(k): v for k, v in raw.items() if not k.endswith(_IGNORED_SUFFIXES)}


def load_model(model_dir: Path, *, allow_missing_head: bool = False) -> BertHashForSequenceClassification:
    """Build the model from config.json and fill it from model.safetensors, checking every key and shape.

    A missing pooler is initialised randomly with a warning (the published base checkpoints have
    none); a missing classifier only with allow_missing_head=True (starting a fine-tune from a base).
    """
    model_dir = Path(model_dir)
    cfg = ModelConfig.load(model_dir)
    model = BertHashForSequenceClassification(cfg)
    expected = model.state_dict()
    loaded = read_state_dict(model_dir)

    for key, array in loaded.items():
        if key not in expected:
            raise ModelLoadError(
                f"{model_dir / WEIGHTS_FILE}: unexpected tensor {key!r} for model_type {cfg.model_type}"
            )
        if tuple(array.shape) != tuple(expected[key].shape):
            raise ModelLoadError(
                f"{model_dir / WEIGHTS_FILE}: tensor {key!r} has shape {tuple(array.shape)}, "
                f"config.json implies {tuple(expected[key].shape)}"
            )
    missing = [k for k in expected if k not in loaded]
    optional = ("bert.pooler.",) + (("classifier.",) if allow_missing_head else ())
    required_missing = [k for k in missing if not k.startswith(optional)]
    if required_missing:
        raise ModelLoadError(f"{model_dir / WEIGHTS_FILE}: missing tensor {required_missing[0]!r}")
    if missing:
        log.warning("%s: no weights for %s; they stay randomly initialised", model_dir, ", ".join(missing))

    state = {k: torch.from_numpy(np.ascontiguousarray(v)).to(expected[k].dtype) for k, v in loaded.items()}
    model.load_state_dict(state, strict=False)
    model.eval()
    return model


def save_model(model: BertHashForSequenceClassification, model_dir: Path, tokenizer_dir: Path | None = None) -> None:
    """Write config.json + model.safetensors (+ tokenizer files and remote-code shims)."""
    from app.modeling.tokenizer import copy_tokenizer_files

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    model.config.save(model_dir)
    tensors = {k: v.detach().cpu().contiguous().numpy() for k, v in model.state_dict().items()}
    save_file(tensors, str(model_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    if tokenizer_dir is not None and Path(tokenizer_dir).resolve() != model_dir.resolve():
        copy_tokenizer_files(Path(tokenizer_dir), model_dir, model.config.max_length)
    if model.config.model_type == "bert_hash":
        for shim in _REMOTE_CODE_DIR.glob("*.py"):
            shutil.copyfile(shim, model_dir / shim.name)
