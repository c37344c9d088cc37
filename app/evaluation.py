"""Benchmark a model directory through the one scoring path (app.scorer.Scorer).

STS-B dev/test Pearson and Spearman against gold 0-5, SICK-R test Spearman against relatedness 1-5,
and WikiQA test MAP/MRR over the questions with at least one correct answer (each question's candidates
ranked by score). Data layout: ../shared/data (see shared/data/README.md).
"""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app.runtime.base import Backend
from app.scorer import Scorer

Pairs = list[tuple[str, str]]


def read_sts_b(data_dir: Path, split: str) -> tuple[Pairs, np.ndarray]:
    pairs, gold = [], []
    for line in (data_dir / "stsbenchmark" / f"sts-{split}.csv").read_text(encoding="utf-8").splitlines():
        f = line.split("\t")  # tab-separated, not CSV-quoted; some rows carry 2 extra source columns
        if len(f) >= 7:
            pairs.append((f[5].strip(), f[6].strip()))
            gold.append(float(f[4]))
    return pairs, np.array(gold)


def read_sick_test(data_dir: Path) -> tuple[Pairs, np.ndarray]:
    with (data_dir / "sick" / "SICK.txt").open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE) if r["SemEval_set"] == "TEST"]
    return [(r["sentence_A"], r["sentence_B"]) for r in rows], np.array([float(r["relatedness_score"]) for r in rows])


def read_wikiqa_test(data_dir: Path) -> tuple[Pairs, np.ndarray, list[str]]:
    with (data_dir / "wikiqa" / "WikiQA-test.tsv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return (
        [(r["Question"], r["Sentence"]) for r in rows],
        np.array([int(r["Label"]) for r in rows]),
        [r["QuestionID"] for r in rows],
    )


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x, y)[0, 1])


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return pearson(_ranks(x), _ranks(y))


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), as scipy.stats.rankdata."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x))
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e - 1) / 2.0
    return ranks


def map_mrr(scores: np.ndarray, labels: np.ndarray, groups: Sequence[str]) -> tuple[float, float, int]:
    """MAP and MRR over groups with >= 1 positive; ties broken by input order. Returns (map, mrr, n_groups)."""
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    aps, rrs = [], []
    for rows in by_group.values():
        rel = labels[rows]
        if rel.sum() == 0:
            continue
        ranked = rel[np.argsort(-scores[rows], kind="stable")]
        hits = np.flatnonzero(ranked)
        aps.append(float(np.mean((np.arange(len(hits)) + 1) / (hits + 1))))
        rrs.append(1.0 / (hits[0] + 1))
    return float(np.mean(aps)), float(np.mean(rrs)), len(aps)


def evaluate(model_dir: Path, data_dir: Path, backend: Backend = "onnx", threads: int = 1) -> dict[str, float]:
    """Every metric for one backend of MODEL_DIR, rounded to 4 decimals, plus the scoring time."""
    scorer = Scorer.load(Path(model_dir), backend, threads=threads)
    t0 = time.perf_counter()
    out: dict[str, float] = {}
    for split in ("dev", "test"):
        pairs, gold = read_sts_b(data_dir, split)
        pred = scorer.score(pairs)
        out[f"stsb_{split}_pearson"] = pearson(pred, gold)
        out[f"stsb_{split}_spearman"] = spearman(pred, gold)
    pairs, gold = read_sick_test(data_dir)
    out["sick_test_spearman"] = spearman(scorer.score(pairs), gold)
    pairs, labels, groups = read_wikiqa_test(data_dir)
    out["wikiqa_test_map"], out["wikiqa_test_mrr"], n = map_mrr(scorer.score(pairs), labels, groups)
    out = {k: round(v, 4) for k, v in out.items()}
    out["wikiqa_test_questions"] = n
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out
