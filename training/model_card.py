"""Write MODEL_CARD.md of a trained model directory from its eval.json (written by `hashrank eval --write`)
and the training run's report.json.

    python -m training.model_card --model models/sts-hash-nano --report training/runs/sts-0/report.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.modeling.config import ModelConfig

# Published rows (model cards of the dleemiller models, STS-B test) and our teachers' cosine scores,
# measured on this machine on the same data (shared/reference/teachers.md): (test P, test S, dev S, SICK S, MAP, MRR).
PUBLISHED = [
    ("dleemiller/sts-bert-hash-nano (published)", "0.97M", 0.7904, 0.7743, None, None, None, None),
    ("dleemiller/sts-bert-hash-pico (published)", "0.45M", 0.7595, 0.7474, None, None, None, None),
    ("dleemiller/EttinX-sts-xxs (published)", "17M", None, 0.8311, None, None, None, None),
]
TEACHERS = [
    ("teacher: all-MiniLM-L6-v2 cosine", "22.7M", "0.827", "0.820", "0.867", "0.772", "0.722", "0.736"),
    ("teacher: multilingual-e5-small cosine", "118M", "0.824", "0.840", "0.872", "0.771", "0.774", "0.790"),
    ("teachers: z-scored mean of both", "", "0.848", "0.852", "0.884", "0.780", "0.758", "0.773"),
]


def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}" if isinstance(x, float) and x < 1.5 else str(x)


def table(ev: dict, params: str) -> str:
    head = (
        "| model | params | STS-B test Pearson | STS-B test Spearman | STS-B dev Spearman "
        "| SICK-R test Spearman | WikiQA test MAP | WikiQA test MRR |\n"
    )
    head += "|---|---|---|---|---|---|---|---|\n"
    rows = []
    for name in ("fp32", "int8"):
        if name in ev:
            e = ev[name]
            label = f"**this model, {'ONNX fp32' if name == 'fp32' else 'ONNX int8'}**"
            rows.append((label, params, e["stsb_test_pearson"],
                         e["stsb_test_spearman"], e["stsb_dev_spearman"], e["sick_test_spearman"],
                         e["wikiqa_test_map"], e["wikiqa_test_mrr"]))
    rows += PUBLISHED + TEACHERS
    lines = ("| " + " | ".join(fmt(c) if i > 1 else str(c) for i, c in enumerate(r)) + " |" for r in rows)
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--report", type=Path, required=True)
    ap.add_argument("--notes", type=Path, default=None, help="markdown appended verbatim (recipe details)")
    args = ap.parse_args(argv)
    ev = json.loads((args.model / "eval.json").read_text())
    rep = json.loads(args.report.read_text())
    cfg = ModelConfig.load(args.model)
    params = f"{rep['params']:,}"
    notes = args.notes.read_text() if args.notes else ""
    text = TEMPLATE.format(
        name=args.model.name, params=params, cfg=cfg, table=table(ev, f"{rep['params'] / 1e6:.2f}M"),
        eval_json=json.dumps(ev, indent=2), report=json.dumps(rep, indent=2), notes=notes,
    )
    (args.model / "MODEL_CARD.md").write_text(text, encoding="utf-8")


TEMPLATE = """# {name}: a {params}-parameter BERT Hash cross-encoder for semantic similarity

Scores a pair of English sentences with sigmoid(logit) in [0, 1] (≈ STS-B gold / 5). Trained on this
machine's CPUs, without any published BERT Hash weights.

## Evaluation (from eval.json, `hashrank eval --model models/{name} --int8 --write`)
{table}

Published rows are copied from the dleemiller model cards (STS-B test); teacher rows are cosine similarities of
the teachers' sentence embeddings, measured here on the same files (shared/reference/teachers.md).
WikiQA: the 243 test questions with at least one correct answer, each question's candidates ranked by score.

## Architecture
BERT Hash (post-LN BERT whose word embedding is a [30522, P] code table lifted by Linear(P, H)),
`model_type: bert_hash`: hidden {cfg.hidden_size}, layers {cfg.num_hidden_layers}, heads {cfg.num_attention_heads},
intermediate {cfg.intermediate_size}, projections P = {cfg.projections}, max positions {cfg.max_position_embeddings},
one-label head with sigmoid. **{params} parameters**. Tokenizer: BERT uncased WordPiece (all-MiniLM-L6-v2's files).
Files: config.json, model.safetensors, tokenizer files, model.onnx (fp32) and model.int8.onnx, **the file the
server serves by default** (`HASHRANK_BACKEND=onnx-int8`): int8 weights of every MatMul/Gemm and the hash table,
activation scales fixed at export on STS-B and WikiQA train pairs, so a pair's score does not depend on its
batch-mates (app/modeling/quantize.py). `HASHRANK_BACKEND=onnx` serves the fp32 file.

{notes}

## Raw numbers
eval.json:
```json
{eval_json}
```
Training report (training/runs/.../report.json):
```json
{report}
```
"""

if __name__ == "__main__":
    main()
