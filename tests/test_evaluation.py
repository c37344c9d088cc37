"""Metric code of `hashrank eval` against scipy and hand-computed rankings (no model needed)."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr

from app.evaluation import map_mrr, pearson, spearman


def test_correlations_match_scipy_with_ties() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, 200).astype(float)  # many ties, like STS-B gold scores
    y = x + rng.normal(0, 2, 200)
    assert abs(spearman(y, x) - spearmanr(y, x).statistic) < 1e-12
    assert abs(pearson(y, x) - pearsonr(y, x).statistic) < 1e-12


def test_map_mrr_skips_questions_without_answers() -> None:
    scores = np.array([0.9, 0.8, 0.1, 0.5, 0.4, 0.3, 0.2])
    labels = np.array([0, 1, 1, 0, 0, 0, 0])
    groups = ["q1", "q1", "q1", "q2", "q2", "q3", "q3"]
    m, r, n = map_mrr(scores, labels, groups)
    # q1: hits at ranks 2 and 3 -> AP = (1/2 + 2/3) / 2, RR = 1/2; q2 and q3 have no answer.
    assert n == 1 and abs(m - (1 / 2 + 2 / 3) / 2) < 1e-12 and abs(r - 0.5) < 1e-12
