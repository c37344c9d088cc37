"""Calibrate a trained model's score and fold it into the classifier: sigmoid(a * logit + b) replaces
sigmoid(logit), with (a, b) fitted on dev/valid splits, written as classifier weight a * W and bias a * c + b.
Serving does not change; rankings do not change (a > 0); thresholds start to mean something.

- rerank: a probability of relevance. Fitted by log-loss on WikiQA dev (every candidate of the answered
  questions) and InsuranceQA valid (correct answers + first 50 negatives), each source weighted equally;
  expected calibration error (10 equal-width bins) before and after on both test splits.
- sts: score ~ gold similarity / 5. Fitted by squared error on STS-B dev; the binned error on STS-B test and
  SICK-R test (relatedness 1-5 mapped to 0-1) as well.

    python -m training.calibrate --model DIR --task rerank
    python -m training.calibrate --model DIR --task sts

`make train-rerank` ends with it (the rerank task); `sts-hash-nano` ships uncalibrated (numbers in the card
notes, 2026-12-04).

Writes the folded model.safetensors, re-exports model.onnx / model.int8.onnx, and writes calibration.json and
calibration.png (reliability diagram) next to them. Run it once per trained model: it is deterministic, so a
recipe that ends with it reproduces the shipped bytes.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from app.evaluation import read_sick_test, read_sts_b
from app.scorer import Scorer
from training.rerank_data import DATA_DIR, Question, load_wikiqa_tsv

BINS = 10
INSURANCEQA_NEGATIVES = 50
# InsuranceQA valid questions used for the fit (of 2,000): ~26k pairs, enough for two parameters.
INSURANCEQA_FIT_QUESTIONS = 500


@dataclass(frozen=True)
class Platt:
    a: float  # multiplies the logit; > 0, so rankings are unchanged
    b: float  # added to it

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * logits + self.b)))


def fit(logits: np.ndarray, targets: np.ndarray, weights: np.ndarray, loss: str) -> Platt:
    """(a, b) minimising the weighted log-loss ("bce", 0/1 targets) or squared error ("mse", targets in [0, 1])."""
    z, y, w = logits.astype(np.float64), targets.astype(np.float64), weights / weights.sum()

    def objective(params: np.ndarray) -> float:
        p = np.clip(Platt(*params)(z), 1e-12, 1 - 1e-12)
        if loss == "bce":
            return float(-(w * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum())
        return float((w * (p - y) ** 2).sum())

    result = minimize(objective, x0=np.array([1.0, 0.0]), method="L-BFGS-B", bounds=[(1e-3, None), (None, None)])
    return Platt(float(result.x[0]), float(result.x[1]))


def binned_error(scores: np.ndarray, targets: np.ndarray, bins: int = BINS) -> tuple[float, list[dict]]:
    """Expected calibration error over equal-width score bins: sum over bins of share x |mean target - mean
    score|, and the per-bin rows of the reliability diagram."""
    index = np.minimum((scores * bins).astype(int), bins - 1)
    rows, error = [], 0.0
    for k in range(bins):
        inside = index == k
        if not inside.any():
            continue
        mean_score, mean_target = float(scores[inside].mean()), float(targets[inside].mean())
        error += inside.mean() * abs(mean_target - mean_score)
        rows.append({"bin": k, "pairs": int(inside.sum()), "mean_score": mean_score, "mean_target": mean_target})
    return float(error), rows


def question_logits(scorer: Scorer, questions: Sequence[Question]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(q.text, s) for q in questions for s in q.sentences]
    labels = np.array([label for q in questions for label in q.labels], dtype=np.float64)
    return scorer.score(pairs, raw=True, truncation="only_second"), labels


def rerank_sets(scorer: Scorer, split: str, smoke: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """source -> (logits, 0/1 labels): WikiQA (answered questions) and InsuranceQA, dev/valid or test."""
    from training.insuranceqa import questions as insuranceqa

    wikiqa = [q for q in load_wikiqa_tsv("dev" if split == "fit" else "test") if q.has_answer][: 20 if smoke else None]
    limit = 20 if smoke else INSURANCEQA_FIT_QUESTIONS if split == "fit" else None
    iqa = insuranceqa("valid" if split == "fit" else "test", negatives=INSURANCEQA_NEGATIVES, limit=limit)
    return {"wikiqa": question_logits(scorer, wikiqa), "insuranceqa": question_logits(scorer, iqa)}


def sts_sets(scorer: Scorer, split: str, smoke: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """STS-B dev (fit) or test with gold / 5; at test also SICK-R test with (relatedness - 1) / 4."""
    cut = slice(0, 200 if smoke else None)
    pairs, gold = read_sts_b(DATA_DIR, "dev" if split == "fit" else "test")
    sets = {"stsb": (scorer.score(pairs[cut], raw=True), gold[cut] / 5.0)}
    if split == "test":
        pairs, relatedness = read_sick_test(DATA_DIR)
        sets["sick"] = (scorer.score(pairs[cut], raw=True), (relatedness[cut] - 1.0) / 4.0)
    return sets


def fold_into_classifier(model_dir: Path, platt: Platt) -> None:
    """classifier.weight *= a; classifier.bias = a * bias + b, in model.safetensors."""
    from safetensors.numpy import load_file, save_file

    path = model_dir / "model.safetensors"
    tensors = load_file(str(path))
    weight, bias = _key(tensors, "classifier.weight"), _key(tensors, "classifier.bias")
    tensors[bias] = (platt.a * tensors[bias].astype(np.float64) + platt.b).astype(tensors[bias].dtype)
    tensors[weight] = (platt.a * tensors[weight].astype(np.float64)).astype(tensors[weight].dtype)
    save_file(tensors, str(path), metadata={"format": "pt"})


def _key(tensors: dict[str, np.ndarray], name: str) -> str:
    return next(k for k in tensors if k == name or k.endswith("." + name))


def plot(path: Path, curves: dict[str, list[dict]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    for label, rows in curves.items():
        ax.plot([r["mean_score"] for r in rows], [r["mean_target"] for r in rows], marker="o", label=label)
    ax.set(xlabel="mean score in bin", ylabel="observed (relevance rate / gold÷5)", title=title, xlim=(0, 1))
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def calibrate(model_dir: Path, task: str, smoke: bool = False) -> dict:
    """Fit, fold, re-export and report; `smoke` fits and reports on a few questions only (tests)."""
    sets = rerank_sets if task == "rerank" else sts_sets
    scorer = Scorer.load(model_dir, "onnx")
    fit_sets = sets(scorer, "fit", smoke)
    logits = np.concatenate([z for z, _ in fit_sets.values()])
    targets = np.concatenate([y for _, y in fit_sets.values()])
    weights = np.concatenate([np.full(len(z), 1.0 / len(z)) for z, _ in fit_sets.values()])  # sources equal
    platt = fit(logits, targets, weights, "bce" if task == "rerank" else "mse")
    report: dict = {"task": task, "a": platt.a, "b": platt.b, "fit": {}, "test": {}}
    curves = {}
    for split, split_sets in (("fit", fit_sets), ("test", sets(scorer, "test", smoke))):
        for source, (z, y) in split_sets.items():
            before, rows_before = binned_error(Platt(1.0, 0.0)(z), y)
            after, rows_after = binned_error(platt(z), y)
            report[split][source] = {"pairs": len(z), "ece_before": round(before, 4), "ece_after": round(after, 4)}
            if split == "test":
                curves[f"{source} test, before (ECE {before:.3f})"] = rows_before
                curves[f"{source} test, after (ECE {after:.3f})"] = rows_after
    fold_into_classifier(model_dir, platt)
    from app.modeling.onnx_export import export_onnx

    export_onnx(model_dir)
    (model_dir / "calibration.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(model_dir / "calibration.png", curves, f"{model_dir.name}: reliability, 10 bins")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--task", choices=["rerank", "sts"], required=True)
    parser.add_argument("--smoke", action="store_true", help="a few questions only (tests)")
    args = parser.parse_args(argv)
    print(json.dumps(calibrate(args.model, args.task, args.smoke), indent=2))


if __name__ == "__main__":
    main()
