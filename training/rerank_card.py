"""Write <model>/MODEL_CARD.md from its training.json and eval.json (numbers are never typed by hand).

python -m training.rerank_card --model models/rerank-hash-nano --notes notes.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _interval(ci: list[float] | None, signed: bool = False) -> str:
    if not ci:
        return ""
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if signed else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _row(name: str, m: dict) -> str:
    ndcg = f"{m['ndcg@10']:.4f} {_interval(m.get('ndcg@10_ci95'))}".rstrip()
    return f"| {name} | {ndcg} | {m['mrr@10']:.4f} | {_interval(m.get('ndcg@10_minus_bm25_ci95'), signed=True)} |"


def _map_cell(m: dict) -> str:
    """MAP with its bootstrap 95% interval, if the evaluation recorded one."""
    return f"{m['map']:.4f} {_interval(m.get('map_ci95'))}".rstrip()


def _paired_lines(wq: dict, resamples: int) -> list[str]:
    """The paired bootstrap intervals of MAP differences (rerank_eval), if the evaluation recorded them."""
    parts = []
    for backend, name in (("onnx", "fp32"), ("onnx-int8", "int8")):
        for key, other in (("map_minus_minilm_ci95", "MiniLM cosine"), ("map_minus_fp32_ci95", "fp32")):
            if key in wq.get(backend, {}):
                parts.append(f"{name} minus {other} {_interval(wq[backend][key], signed=True)}")
    if not parts:
        return []
    return [
        f"MAP in brackets: its 95% bootstrap interval over the questions ({resamples:,} resamples). Intervals of the",
        "paired MAP differences, question by question: " + "; ".join(parts) + ".",
        "",
    ]


def _by_type_table(wq: dict) -> list[str]:
    """MAP per question type (fp32, int8, MiniLM), if the evaluation recorded it."""
    if "by_type" not in wq.get("onnx", {}):
        return []
    columns = [k for k in ("onnx", "onnx-int8", "minilm_cosine") if "by_type" in wq.get(k, {})]
    names = {"onnx": "fp32", "onnx-int8": "int8", "minilm_cosine": "MiniLM cosine"}
    lines = [
        "MAP by question type (the question's first word):",
        "",
        "| type | questions | " + " | ".join(names[k] for k in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for qtype, row in wq["onnx"]["by_type"].items():
        cells = " | ".join(f"{wq[k]['by_type'][qtype]['map']:.4f}" for k in columns)
        lines.append(f"| {qtype} | {row['questions']} | {cells} |")
    return [*lines, ""]


def _calibration_lines(model_dir: Path) -> list[str]:
    """The score calibration folded into the head (training.calibrate), if the model has one."""
    path = model_dir / "calibration.json"
    if not path.is_file():
        return []
    cal = json.loads(path.read_text())
    lines = [
        "## Calibrated score",
        "",
        f"`relevance_score` is sigmoid({cal['a']:.4f} x logit {cal['b']:+.4f}) of the trained head, folded into the",
        "classifier (training.calibrate, fitted by log-loss on WikiQA dev and InsuranceQA valid, sources weighted",
        "equally), so it reads as a probability of relevance and thresholds (`min_score`) mean something. Expected",
        "calibration error, 10 equal-width bins (reliability diagram: calibration.png):",
        "",
        "| set | pairs | ECE before | ECE after |",
        "|---|---|---|---|",
    ]
    for split in ("fit", "test"):
        for source, row in cal[split].items():
            name = f"{source} {'dev/valid (fit)' if split == 'fit' else 'test'}"
            lines.append(f"| {name} | {row['pairs']:,} | {row['ece_before']:.4f} | {row['ece_after']:.4f} |")
    return [*lines, ""]


def _insuranceqa_lines(ev: dict) -> list[str]:
    """InsuranceQA test beside BM25 and MiniLM, if the evaluation recorded it."""
    iqa = ev.get("insuranceqa")
    if not iqa:
        return []
    lines = [
        f"InsuranceQA v1 test: each of the {iqa['questions']:,} questions' correct answers + its first 50 negatives",
        f"({iqa['pairs']:,} pairs); MAP in brackets: its 95% bootstrap interval over the questions.",
        "",
        "| model | MAP | MRR | P@1 | MAP minus MiniLM |",
        "|---|---|---|---|---|",
    ]
    rows = (("onnx", "rerank-hash-nano fp32"), ("onnx-int8", "rerank-hash-nano int8 (served)"),
            ("minilm_cosine", "all-MiniLM-L6-v2 cosine (22M, reference)"), ("bm25", "BM25 (each question's list)"),
            ("bm25_collection_idf", "BM25 (all answers' statistics)"))
    for key, name in rows:
        if key in iqa:
            m = iqa[key]
            lines.append(f"| {name} | {_map_cell(m)} | {m['mrr']:.4f} | {m['p@1']:.4f} | "
                         f"{_interval(m.get('map_minus_minilm_ci95'), signed=True)} |")
    return [*lines, ""]


def render(model_dir: Path, notes: str) -> str:
    tr = json.loads((model_dir / "training.json").read_text())
    ev = json.loads((model_dir / "eval.json").read_text())
    cfg = json.loads((model_dir / "config.json").read_text())
    hp, wq, pool = tr["hyper"], ev["wikiqa"], ev["pooled_bm25_top100"]
    best = tr["best_step"]
    lines = [
        f"# {model_dir.name}",
        "",
        "A relevance reranker (cross-encoder) for query–passage pairs: BERT Hash nano"
        f" (H{cfg['hidden_size']}, {cfg['num_hidden_layers']} layers,",
        f"{cfg['num_attention_heads']} heads, FFN {cfg['intermediate_size']}, {cfg['projections']}-d hash codes lifted"
        f" to {cfg['hidden_size']}), **{tr['params']:,} parameters**, max_length {hp['max_length']}",
        "tokens per pair, sigmoid(logit) score. Same layout as sts-hash-nano; served by `/rank` by default, from",
        "model.int8.onnx (int8 weights, activation scales fixed at export on STS-B/WikiQA train pairs, so a pair's",
        "score does not depend on its batch-mates; `HASHRANK_BACKEND=onnx` serves the fp32 model.onnx).",
        "",
        "## Evaluation (WikiQA test; scored through `app.scorer.Scorer`, ONNX Runtime, 1 thread)",
        "",
        f"Answer selection: rerank each question's given candidates; MAP/MRR over the {wq['questions']} questions",
        "with at least one correct answer.",
        "",
        "| model | MAP | MRR | pairs/s (1 thread, shared CPU) |",
        "|---|---|---|---|",
    ]
    names = (
        ("onnx", "rerank-hash-nano fp32 (model.onnx)"),
        ("onnx-int8", "rerank-hash-nano int8 (model.int8.onnx, served)"),
    )
    for key, name in names:
        if key in wq:
            lines.append(f"| {name} | {_map_cell(wq[key])} | {wq[key]['mrr']:.4f} | {wq[key]['pairs_per_s']} |")
    mc = wq["minilm_cosine"]
    lines += [
        f"| all-MiniLM-L6-v2 cosine (22M, reference) | {_map_cell(mc)} | {mc['mrr']:.4f} | |",
        "",
        *_paired_lines(wq, ev.get("bootstrap_resamples", 0)),
        *_by_type_table(wq),
        f"Search pipeline: all {pool['corpus_sentences']:,} distinct WikiQA test sentences pooled into one corpus;",
        f"each of the {pool['queries']} test questions with an answer is a query; BM25 (bm25s, English stopwords)",
        f"top-100, then reranked (BM25 recall@100 = {pool['bm25_recall@100']:.4f}: the ceiling for any reranker).",
        "",
        "nDCG@10 in brackets: its 95% bootstrap interval over the queries; last column: the interval of the",
        "paired nDCG@10 gain over BM25's own order, query by query.",
        "",
        "| ranking of BM25's top-100 | nDCG@10 | MRR@10 | nDCG@10 minus BM25 |",
        "|---|---|---|---|",
        _row("BM25 order", pool["bm25"]),
    ]
    for key, name in (("rerank_onnx", "rerank-hash-nano fp32"), ("rerank_onnx-int8", "rerank-hash-nano int8")):
        if key in pool:
            lines.append(_row(name, pool[key]))
    lines += [
        _row("all-MiniLM-L6-v2 cosine (reference)", pool["minilm_rerank"]),
        "",
        *_insuranceqa_lines(ev),
        *_calibration_lines(model_dir),
        f"Selection: WikiQA dev MAP (checked every {hp['eval_every']} steps), best at step {best} of {hp['steps']}:"
        f" dev MAP {tr['dev_map']:.4f}, MRR {tr['dev_mrr']:.4f}.",
        "Full numbers: eval.json, training.json.",
        "",
        notes.strip(),
        "",
        "## Hyper-parameters (training.json)",
        "",
        "| " + " | ".join(hp) + " |",
        "|" + "---|" * len(hp),
        "| " + " | ".join(str(v) for v in hp.values()) + " |",
        "",
        f"Wall time: training {tr['train_seconds'] / 60:.0f} min"
        " on 1 thread of a 2-core machine shared with other",
        f"jobs; evaluation {ev['eval_seconds'] / 60:.1f} min.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--notes", type=Path, required=True, help="markdown: data, licences, recipe, limits")
    args = ap.parse_args()
    (args.model / "MODEL_CARD.md").write_text(render(args.model, args.notes.read_text()), encoding="utf-8")


if __name__ == "__main__":
    main()
