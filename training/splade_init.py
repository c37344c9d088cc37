"""Initialise a BERT Hash nano student from SPLADE-tiny: its encoder body as is, its word embeddings factorised.

SPLADE-tiny is a BERT with exactly the nano student's shape (hidden 128, 2 layers, 2 heads, FFN 512, 512
positions) and vocabulary (BERT uncased, 30,522 ids), so every encoder weight, the position and token-type
tables and the embedding LayerNorm copy over unchanged. Its [30522, 128] word-embedding table E becomes the
hash pair: with E = mean + U S V^T (centred SVD), the [30522, P] table is the top-P columns of U S (scaled to unit
std) and the Linear(P, 128) maps them back (weight = V_P^T times that scale, bias = mean), so the student's
token vectors are the rank-P approximation of SPLADE's. The pooler and the 1-logit classifier start fresh.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file

from app.modeling.bert_hash import BertHashForSequenceClassification
from app.modeling.config import ModelConfig
from training.teacher_fetch import SPLADE_TINY, TEACHER_CACHE, fetch


def svd_codes(table: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(codes [V, p] with unit overall std, weight [H, p], bias [H], variance kept) with
    codes @ weight.T + bias = the best rank-p approximation of the table around its mean row."""
    mean = table.mean(axis=0)
    u, s, vt = np.linalg.svd((table - mean).astype(np.float64), full_matrices=False)
    codes = u[:, :p] * s[:p]  # (V, p)
    scale = codes.std()
    kept = float((s[:p] ** 2).sum() / (s**2).sum())
    weight = (vt[:p].T * scale).astype(np.float32)  # (H, p)
    return (codes / scale).astype(np.float32), weight, mean.astype(np.float32), kept


def _student_key(key: str) -> str:
    """SPLADE's (TF-style) LayerNorm gamma/beta are our weight/bias."""
    return key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")


def init_from_splade(cfg: ModelConfig, folder: Path | None = None) -> tuple[BertHashForSequenceClassification, dict]:
    """A fresh student of shape cfg with SPLADE-tiny's body and factorised embeddings; returns (model, report)."""
    folder = folder or fetch(SPLADE_TINY, TEACHER_CACHE)
    teacher = {_student_key(k): v for k, v in load_file(str(folder / "model.safetensors")).items()}
    model = BertHashForSequenceClassification(cfg)
    state = model.state_dict()
    copied = []
    for key, value in teacher.items():
        if key in state and key != "bert.embeddings.word_embeddings.weight":
            if tuple(state[key].shape) != value.shape:
                raise ValueError(f"{key}: SPLADE-tiny has {value.shape}, the student {tuple(state[key].shape)}")
            state[key] = torch.from_numpy(value.copy())
            copied.append(key)
    codes, weight, bias, kept = svd_codes(teacher["bert.embeddings.word_embeddings.weight"], cfg.projections or 0)
    state["bert.embeddings.word_embeddings.embeddings.weight"] = torch.from_numpy(codes)
    state["bert.embeddings.word_embeddings.projections.weight"] = torch.from_numpy(weight)
    state["bert.embeddings.word_embeddings.projections.bias"] = torch.from_numpy(bias)
    model.load_state_dict(state)
    fresh = [k for k in state if k not in copied and not k.startswith("bert.embeddings.word_embeddings.")]
    return model, {"copied_tensors": len(copied), "fresh": fresh, "svd_variance_kept": round(kept, 4)}
