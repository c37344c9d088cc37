"""The cross-encoder teacher on 40 WikiQA train questions: two folds, held-out scores, resume, student use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.cross_teacher import article_folds
from training.rerank_data import Question, cross_scores_path, load_wikiqa_train
from training.rerank_hyper import Hyper
from training.rerank_lists import ListSampler

ROOT = Path(__file__).resolve().parents[2]
ENV = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}


def test_article_folds_keep_an_articles_questions_together() -> None:
    questions = load_wikiqa_train()
    fold = article_folds(questions, 2, seed=0)
    by_article: dict[tuple[str, ...], set[int]] = {}
    for q, f in zip(questions, fold, strict=True):
        by_article.setdefault(tuple(q.sentences), set()).add(int(f))
    assert all(len(folds) == 1 for folds in by_article.values())
    assert 0.4 < fold.mean() < 0.6  # two folds of about equal size
    again = article_folds([Question("x", q.text, q.sentences, q.labels) for q in questions], 2, seed=0)
    assert (again == fold).all()  # deterministic per seed


def test_cross_encoder_share_needs_a_bi_encoder_teacher(tmp_path: Path) -> None:
    hp = Hyper(teacher="none", cross_weight=0.5)  # its logits are put on the bi-encoder's scale
    with pytest.raises(ValueError, match="needs a bi-encoder teacher"):
        ListSampler(load_wikiqa_train()[:40], hp, tmp_path, smoke=True)


def _fold(fold: int, steps: int, cache: Path, run_dir: Path) -> tuple[dict, str]:
    cmd = [sys.executable, "-m", "training.cross_teacher", "--smoke", "--fold", str(fold), "--steps", str(steps)]
    cmd += ["--cache", str(cache), "--run-dir", str(run_dir / f"fold{fold}")]
    done = subprocess.run(cmd, cwd=ROOT, check=True, timeout=300, env=ENV, capture_output=True, text=True)
    summary = json.loads(cross_scores_path(cache, fold, smoke=True).with_suffix(".json").read_text())
    return summary, done.stderr


@pytest.mark.slow
def test_folds_score_every_held_out_question_and_refuse_a_stale_split(tmp_path: Path) -> None:
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    questions = load_wikiqa_train()[:40]
    first, _ = _fold(0, 2, cache, runs)
    resumed, log = _fold(0, 4, cache, runs)  # the same fold with more steps resumes from its step-2 checkpoint
    assert first["steps"] == 2 and resumed["steps"] == 4 and "resumed at step 2" in log
    _fold(1, 2, cache, runs)

    held: dict[int, set[int]] = {}
    for fold in (0, 1):
        part = np.load(cross_scores_path(cache, fold, smoke=True))
        assert np.isfinite(part["logit"]).all()
        for qi in set(part["q"].tolist()):
            assert qi not in held, "a question is scored by one fold only"
            held[qi] = set(part["s"][part["q"] == qi].tolist())
    assert sorted(held) == list(range(len(questions)))
    # Each question's held-out scores cover at least its whole article (the student's question lists).
    assert all(len(held[i]) >= len(q.sentences) for i, q in enumerate(questions))

    # A fold file left over from another split (here "fold 2 of 3") would score some questions twice: refused.
    stale = cross_scores_path(cache, 2, smoke=True)
    stale.write_bytes(cross_scores_path(cache, 1, smoke=True).read_bytes())
    stale.with_suffix(".json").write_text(json.dumps({"fold": 2, "folds": 3}))
    hp = Hyper(teacher="minilm", cross_weight=0.5, sentence_query_groups=0)
    with pytest.raises(ValueError, match="way fold splits"):
        ListSampler(questions, hp, cache, smoke=True)
