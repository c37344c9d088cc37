"""Deepen a trained BERT Hash cross-encoder inside the same parameter budget (an experiment of issue 9).

    python -m training.grow --src models/sts-hash-nano --out training/runs/grown-sts --layers 3 --ffn 320 \
        --positions 256

The nano shape spends its ~970k parameters on the 16-d hash table (50%), two layers of width 128 with 512-wide
feed-forward blocks, and 512 positions, of which serving reads only the first 256. To try a third layer on a
reranker that must read a question's answer type against a sentence, without leaving the budget or losing the
source's training, the grown model:
- keeps the first `positions` rows of the position table;
- keeps each feed-forward block's `ffn` most-used neurons (|input row| x |output column|, in their order);
- appends layers that copy the last layer's weights with both output projections zeroed: such a layer adds
  nothing to the residual stream and only re-normalises it, so the grown model starts close to the source
  (sts-hash-nano -> 3 layers, ffn 320, 256 positions: 987,233 parameters; STS-B dev Spearman 0.8597 against
  the source's 0.8618 before any training) and its new layer trains from a sensible point.
Deterministic: the same source gives the same grown weights. Fine-tuned with the rerank-hash-nano recipe, the
3-layer model ended level with the 2-layer one (WikiQA dev MAP 0.7203 / 0.7292 vs 0.7190 / 0.7293 on seeds
4 / 5; see that model's card), so the shipped model keeps the nano shape.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from app.modeling.bert_hash import BertHashForSequenceClassification
from app.modeling.checkpoint import load_model, save_model

LAYER_PREFIX = "bert.encoder.layer."
# The two projections that write into the residual stream; zero in an appended layer.
RESIDUAL_WRITERS = ("attention.output.dense.", "output.dense.")


def _kept_neurons(state: dict[str, torch.Tensor], layer: int, ffn: int) -> torch.Tensor:
    """Indices of the `ffn` feed-forward neurons of `layer` with the largest |w_in| * |w_out|, ascending."""
    w_in = state[f"{LAYER_PREFIX}{layer}.intermediate.dense.weight"]  # (I, H)
    w_out = state[f"{LAYER_PREFIX}{layer}.output.dense.weight"]  # (H, I)
    usage = w_in.norm(dim=1) * w_out.norm(dim=0)
    return torch.argsort(usage, descending=True)[:ffn].sort().values


def _layer_tensor(state: dict[str, torch.Tensor], key: str, kept: list[torch.Tensor]) -> torch.Tensor:
    """The grown tensor `key` of an encoder layer; kept[i] = the feed-forward neurons kept of source layer i."""
    layer, rest = key[len(LAYER_PREFIX) :].split(".", 1)
    src_layer = min(int(layer), len(kept) - 1)
    value = state[f"{LAYER_PREFIX}{src_layer}.{rest}"].clone()
    if rest.startswith("intermediate.dense."):
        value = value[kept[src_layer]]
    elif rest == "output.dense.weight":
        value = value[:, kept[src_layer]]
    if int(layer) >= len(kept) and rest.startswith(RESIDUAL_WRITERS):
        value.zero_()
    return value


def grow(
    source: BertHashForSequenceClassification, layers: int, ffn: int, positions: int
) -> BertHashForSequenceClassification:
    """The source model with `layers` layers, `ffn`-wide feed-forward blocks and `positions` positions."""
    src_cfg = source.config
    if layers < src_cfg.num_hidden_layers or ffn > src_cfg.intermediate_size:
        raise ValueError("grow only adds layers and only narrows the feed-forward blocks")
    if positions > src_cfg.max_position_embeddings:
        raise ValueError(f"the source has only {src_cfg.max_position_embeddings} positions")
    # max_length follows: the config clamps it to the positions kept.
    cfg = src_cfg.replace(num_hidden_layers=layers, intermediate_size=ffn, max_position_embeddings=positions)
    grown = BertHashForSequenceClassification(cfg)
    state = source.state_dict()
    kept = [_kept_neurons(state, i, ffn) for i in range(src_cfg.num_hidden_layers)]
    new_state = {}
    for key in grown.state_dict():
        if key.startswith(LAYER_PREFIX):
            new_state[key] = _layer_tensor(state, key, kept)
        elif key == "bert.embeddings.position_embeddings.weight":
            new_state[key] = state[key][:positions].clone()
        else:
            new_state[key] = state[key].clone()
    grown.load_state_dict(new_state)
    return grown.eval()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, required=True, help="trained model directory")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--ffn", type=int, required=True, help="feed-forward width of every layer")
    ap.add_argument("--positions", type=int, required=True, help="rows of the position table to keep")
    args = ap.parse_args(argv)
    grown = grow(load_model(args.src), args.layers, args.ffn, args.positions)
    save_model(grown, args.out, tokenizer_dir=args.src)
    print(f"{args.out}: {grown.num_parameters():,} parameters")


if __name__ == "__main__":
    main()
