"""Layer-wise distillation: the student's state-keeping forward and the two losses, on the shipped models."""

from __future__ import annotations

from pathlib import Path

import torch

from app.modeling.checkpoint import load_model
from app.modeling.tokenizer import PairTokenizer
from training.hidden_distill import LayerDistiller, States, student_forward

ROOT = Path(__file__).resolve().parents[2]
PAIRS = [
    ("how many people live in paris", "Paris has a population of about two million."),
    ("who wrote hamlet", "Hamlet is a tragedy written by William Shakespeare around 1600."),
    ("a", "b"),
]


def _batch(model_dir: Path) -> dict[str, torch.Tensor]:
    tok = PairTokenizer.from_dir(model_dir, 256)
    batch = tok.pad(tok.encode_pairs(PAIRS, "only_second"))
    names = ("input_ids", "attention_mask", "token_type_ids")
    return {n: torch.from_numpy(getattr(batch, n)) for n in names}


def test_student_forward_gives_the_models_logits_and_every_layer() -> None:
    model_dir = ROOT / "models" / "rerank-hash-nano"
    model, batch = load_model(model_dir).eval(), _batch(model_dir)
    with torch.no_grad():
        logits, states = student_forward(model, batch)
        expected = model(**batch)[:, 0]
    assert torch.allclose(logits, expected, atol=1e-5)
    tokens, hidden = batch["input_ids"].shape[1], model.config.hidden_size
    assert len(states.hidden) == model.config.num_hidden_layers + 1  # the embeddings, then each layer
    assert all(h.shape == (len(PAIRS), tokens, hidden) for h in [*states.hidden, *states.qkv])


def test_layer_losses_vanish_on_the_teachers_own_states_and_not_on_another_models() -> None:
    """A 2-layer "teacher" (sts-hash-nano) read by the rerank student: equal states give zero relation loss,
    and the hidden loss falls when the projections are fitted."""
    student = load_model(ROOT / "models" / "rerank-hash-nano").eval()
    other = load_model(ROOT / "models" / "sts-hash-nano").eval()
    batch = _batch(ROOT / "models" / "rerank-hash-nano")
    mask = batch["attention_mask"]
    with torch.no_grad():
        _, mine = student_forward(student, batch)
        _, theirs = student_forward(other, batch)
    hidden = student.config.hidden_size
    distiller = LayerDistiller(hidden, 2, hidden, 2, relation_heads=4)
    assert distiller.teacher_layer == [0, 1, 2]
    assert distiller.relation_loss(mine, mine, mask).item() < 1e-6
    assert distiller.relation_loss(mine, theirs, mask).item() > 1e-3

    before = distiller.hidden_loss(mine, theirs, mask).item()
    opt = torch.optim.Adam(distiller.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        distiller.hidden_loss(mine, theirs, mask).backward()
        opt.step()
    assert distiller.hidden_loss(mine, theirs, mask).item() < 0.5 * before


def test_padding_does_not_change_the_layer_losses() -> None:
    """The same pair alone or padded in a batch with a longer one: its losses must not see the pads."""
    model = load_model(ROOT / "models" / "rerank-hash-nano").eval()
    other = load_model(ROOT / "models" / "sts-hash-nano").eval()
    batch = _batch(ROOT / "models" / "rerank-hash-nano")
    shortest = int(batch["attention_mask"].sum(1).argmin())
    alone = {k: v[shortest : shortest + 1, : int(batch["attention_mask"][shortest].sum())] for k, v in batch.items()}
    padded = {k: v[shortest : shortest + 1] for k, v in batch.items()}
    distiller = LayerDistiller(128, 2, 128, 2, relation_heads=4)
    losses = []
    for b in (alone, padded):
        with torch.no_grad():
            s: States = student_forward(model, b)[1]
            t: States = student_forward(other, b)[1]
            mask = b["attention_mask"]
            losses.append((distiller.hidden_loss(s, t, mask), distiller.relation_loss(s, t, mask)))
    assert torch.allclose(torch.stack(losses[0]), torch.stack(losses[1]), atol=1e-5)
