"""The PyTorch model against the reference: parameter counts and an independent float64 forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import erf

from app.modeling.bert_hash import BertHashForSequenceClassification
from app.modeling.config import PRESETS, ModelConfig


@pytest.mark.parametrize(
    ("preset", "encoder_and_pooler", "with_head"),
    [
        # shared/reference/bert-hash.md §1.4: BertHashModel totals, + (H + 1) for the 1-label classifier.
        ("femto", 242_560, 242_611),
        ("pico", 448_336, 448_417),
        ("nano", 969_632, 969_761),
    ],
)
def test_parameter_counts_match_published_models(preset: str, encoder_and_pooler: int, with_head: int) -> None:
    model = BertHashForSequenceClassification(PRESETS[preset])
    assert sum(p.numel() for p in model.bert.parameters()) == encoder_and_pooler
    assert model.num_parameters() == with_head


def reference_logits(
    weights: dict[str, np.ndarray], cfg: ModelConfig, ids: np.ndarray, mask: np.ndarray, types: np.ndarray
) -> np.ndarray:
    """BERT (Hash) sequence classification written from the reference notes in float64 numpy."""
    w = {k.removeprefix("bert."): v.astype(np.float64) for k, v in weights.items()}

    def linear(x: np.ndarray, name: str) -> np.ndarray:
        return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    def layer_norm(x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)  # biased variance, as torch and TF BERT
        return (x - mean) / np.sqrt(var + cfg.layer_norm_eps) * w[f"{name}.weight"] + w[f"{name}.bias"]

    b, t = ids.shape
    if cfg.projections:
        codes = w["embeddings.word_embeddings.embeddings.weight"][ids]  # (B, T, P)
        tokens = linear(codes, "embeddings.word_embeddings.projections")  # (B, T, H)
    else:
        tokens = w["embeddings.word_embeddings.weight"][ids]
    x = tokens + w["embeddings.position_embeddings.weight"][:t] + w["embeddings.token_type_embeddings.weight"][types]
    x = layer_norm(x, "embeddings.LayerNorm")
    heads, d = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
    masked = np.where(mask[:, None, None, :] == 1, 0.0, -np.inf)  # (B, 1, 1, T): padded keys get no weight
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}"
        q, k, v = (
            linear(x, f"{p}.attention.self.{n}").reshape(b, t, heads, d).transpose(0, 2, 1, 3)
            for n in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d) + masked  # (B, A, T, T)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(b, t, heads * d)
        a = layer_norm(linear(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        h = linear(a, f"{p}.intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))  # exact GELU
        x = layer_norm(linear(h, f"{p}.output.dense") + a, f"{p}.output.LayerNorm")
    pooled = np.tanh(linear(x[:, 0], "pooler.dense"))  # (B, H) from [CLS]
    return linear(pooled, "classifier")  # (B, num_labels)


def _scrambled(cfg: ModelConfig) -> BertHashForSequenceClassification:
    # Non-trivial values everywhere (LayerNorm gains, biases), so a swapped or skipped term shows up.
    torch.manual_seed(1)
    model = BertHashForSequenceClassification(cfg).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            base = 1.0 if name.endswith("LayerNorm.weight") else 0.0
            param.copy_(base + 0.2 * torch.randn_like(param))
    return model


def _inputs(cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, cfg.vocab_size, size=(3, 11))  # (B, T)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0  # padded rows exercise the attention mask
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    types = np.zeros_like(ids)
    types[:, 5:] = 1
    return ids, mask, types


@pytest.mark.parametrize(
    "cfg",
    [
        PRESETS["nano"],
        PRESETS["pico"].replace(num_attention_heads=4, num_labels=2),
        # Plain BERT through the same code path (bert-tiny-like, ordinary [V, H] word embeddings).
        ModelConfig(model_type="bert", projections=None, hidden_size=64, num_attention_heads=4, intermediate_size=96),
    ],
    ids=["nano", "pico-4heads-2labels", "plain-bert"],
)
def test_forward_matches_float64_reference(cfg: ModelConfig) -> None:
    model = _scrambled(cfg)
    ids, mask, types = _inputs(cfg)
    with torch.no_grad():
        got = model(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types)).numpy()
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    want = reference_logits(weights, cfg, ids, mask, types)
    assert got.shape == (3, cfg.num_labels)
    assert np.abs(want).max() > 0.1  # the comparison is not between two near-zero vectors
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


def test_padding_does_not_change_a_rows_logit() -> None:
    cfg = PRESETS["nano"]
    model = _scrambled(cfg)
    ids, mask, types = _inputs(cfg)
    with torch.no_grad():
        batched = model(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types))
        n = int(mask[2].sum())
        alone = model(*(torch.from_numpy(a[2:3, :n]) for a in (ids, mask, types)))
    torch.testing.assert_close(alone[0], batched[2], rtol=0, atol=1e-5)
