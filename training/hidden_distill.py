"""Layer-wise distillation from the cross-encoder teacher (training/cross_teacher.py) into the student.

The rerank student learns from one number per pair (the teacher's score), so on 2,118 training questions it
plateaus ~0.02 MAP under its teachers. Here it also matches what the teacher computes inside, on the very same
tokens (both read BERT uncased ids, id for id):
- hidden states (TinyBERT): the embedding output and each student layer, through a learned Linear(H_s, H_t)
  that is thrown away after training, against the teacher's matched layer, standardised per token (MSE);
- self-attention relations of the last layer (MiniLMv2): softmax(X X^T / sqrt(d)) of the queries, keys and
  values split into the same number of relation heads on both sides, KL(teacher || student), so the head
  counts (12 vs 2) need not match and no parameters are added.
Each question is read by the fold model that did not train on it, as for the cached teacher scores.
On the shipped recipe (2 distilled question lists per step) it left dev MAP where it was: 0.7237 / 0.7280 over
seeds 4 / 5 against 0.7312 / 0.7206 (training/RERANK_CARD_NOTES.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from app.modeling.bert_hash import BertHashForSequenceClassification


@dataclass
class States:
    """What a BERT computes for one batch: the embedding output and each layer's output, (B, T, H) each,
    and the last layer's attention inputs projected to queries, keys and values."""

    hidden: list[torch.Tensor]
    qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def student_forward(
    model: BertHashForSequenceClassification, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, States]:
    """The student's logits (B,) and its states: BertModel.forward layer by layer, keeping what it drops."""
    bert = model.bert
    x = bert.embeddings(batch["input_ids"], batch["token_type_ids"])
    additive_mask = (1.0 - batch["attention_mask"][:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
    hidden = [x]
    for layer in bert.encoder.layer:
        x = layer(x, additive_mask)
        hidden.append(x)
    last = bert.encoder.layer[-1].attention.self
    qkv = (last.query(hidden[-2]), last.key(hidden[-2]), last.value(hidden[-2]))
    logits = model.classifier(model.dropout(bert.pooler(x)))[:, 0]
    return logits, States(hidden, qkv)


class CrossTeacherStates:
    """The cross-encoder fold models (training/runs/rerank/cross-fold{K}of{N}/last.pt), read for their states."""

    def __init__(self, run_dirs: list[Path]) -> None:
        from training.cross_teacher import CrossEncoder
        from training.hash_init import minilm_dir

        self.folds = []
        for run_dir in run_dirs:
            model = CrossEncoder(minilm_dir())
            model.load_state_dict(torch.load(run_dir / "last.pt", weights_only=False)["model"])
            self.folds.append(model.eval().requires_grad_(False))
        self.hidden_size = self.folds[0].encoder.config.hidden_size
        self.layers = self.folds[0].encoder.config.num_hidden_layers

    @torch.inference_mode()
    def states(self, fold: int, batch: dict[str, torch.Tensor]) -> States:
        encoder = self.folds[fold].encoder
        out = encoder(**batch, output_hidden_states=True)
        hidden = list(out.hidden_states)
        last = encoder.encoder.layer[-1].attention.self
        qkv = (last.query(hidden[-2]), last.key(hidden[-2]), last.value(hidden[-2]))
        return States([h.clone() for h in hidden], tuple(t.clone() for t in qkv))


class LayerDistiller(nn.Module):
    """The two losses, and the student-to-teacher projections of the hidden-state loss."""

    def __init__(self, student_hidden: int, student_layers: int, teacher_hidden: int, teacher_layers: int,
                 relation_heads: int) -> None:
        super().__init__()
        # Student layer i (1-based) matches teacher layer round(i * L_t / L_s); the embeddings match the embeddings.
        self.teacher_layer = [0] + [round((i + 1) * teacher_layers / student_layers) for i in range(student_layers)]
        self.projections = nn.ModuleList(nn.Linear(student_hidden, teacher_hidden) for _ in self.teacher_layer)
        self.relation_heads = relation_heads

    def hidden_loss(self, student: States, teacher: States, mask: torch.Tensor) -> torch.Tensor:
        """Mean over matched layers of the per-token MSE to the standardised teacher state (pads excluded)."""
        keep = mask.bool()
        losses = []
        for proj, s, t_layer in zip(self.projections, student.hidden, self.teacher_layer, strict=True):
            target = F.layer_norm(teacher.hidden[t_layer], teacher.hidden[t_layer].shape[-1:])
            losses.append(F.mse_loss(proj(s)[keep], target[keep]))
        return torch.stack(losses).mean()

    def relation_loss(self, student: States, teacher: States, mask: torch.Tensor) -> torch.Tensor:
        """Mean over Q-Q, K-K, V-V of KL(teacher || student) between the relation heads' softmax rows."""
        key_mask = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min  # (B, 1, 1, T)
        rows = mask.bool()[:, None, :].expand(-1, self.relation_heads, -1)  # (B, R, T) real query tokens
        losses = []
        for s, t in zip(student.qkv, teacher.qkv, strict=True):
            log_s = self._relations(s, key_mask)
            log_t = self._relations(t, key_mask)
            kl = (log_t.exp() * (log_t - log_s)).sum(-1)  # (B, R, T)
            losses.append(kl[rows].mean())
        return torch.stack(losses).mean()

    def _relations(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        d = h // self.relation_heads
        heads = x.view(b, t, self.relation_heads, d).transpose(1, 2)  # (B, R, T, d)
        return (heads @ heads.transpose(-1, -2) / math.sqrt(d) + key_mask).log_softmax(-1)  # (B, R, T, T)
