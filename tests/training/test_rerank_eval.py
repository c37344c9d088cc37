"""The reranker evaluation on the real shipped model (dev split, a few questions: no eval.json is written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.rerank_card import render
from training.rerank_data import Question, average_precisions, map_by_type, map_mrr, question_type
from training.rerank_eval import bootstrap_ci95, evaluate

ROOT = Path(__file__).resolve().parents[2]


def test_question_type() -> None:
    assert question_type("How many moons does Mars have") == "how"
    assert question_type("WHEN was the web invented") == "when"
    assert question_type("define photosynthesis") == "other"
    assert question_type("") == "other"


def test_map_by_type_groups_answered_questions() -> None:
    def q(text: str, labels: list[int]) -> Question:
        return Question(qid=text, text=text, sentences=[str(i) for i in labels], labels=labels)

    questions = [q("when a", [0, 1]), q("when b", [1, 0]), q("who c", [0, 1]), q("what d", [0, 0])]
    scores = [np.array([0.9, 0.1]), np.array([0.9, 0.1]), np.array([0.1, 0.9]), np.array([0.5, 0.4])]
    assert map_by_type(questions, scores) == {
        "who": {"questions": 1, "map": 1.0},
        "when": {"questions": 2, "map": 0.75},  # AP 0.5 (answer second) and 1.0
    }  # the unanswered "what" question is left out, as in MAP


def test_average_precisions_are_the_answered_questions_aps() -> None:
    questions = [
        Question(qid="a", text="a", sentences=["x", "y"], labels=[0, 1]),
        Question(qid="b", text="b", sentences=["x", "y"], labels=[0, 0]),  # unanswered: not in MAP
        Question(qid="c", text="c", sentences=["x", "y", "z"], labels=[1, 0, 1]),
    ]
    scores = [np.array([0.9, 0.1]), np.array([0.2, 0.3]), np.array([0.9, 0.5, 0.1])]
    aps = average_precisions(questions, scores)
    np.testing.assert_allclose(aps, [0.5, (1 + 2 / 3) / 2])
    assert map_mrr(questions, scores)[0] == aps.mean()


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_questions() -> None:
    rng = np.random.default_rng(1)
    few, many = rng.random(50), rng.random(2000)
    lo, hi = bootstrap_ci95(few)
    assert lo < few.mean() < hi
    lo_many, hi_many = bootstrap_ci95(many)
    assert hi_many - lo_many < (hi - lo) / 3  # ~1/sqrt(40) of the width
    assert bootstrap_ci95(np.full(30, 0.7)) == [0.7, 0.7]
    assert bootstrap_ci95(few - few) == [0.0, 0.0]  # a paired difference of a system with itself
    assert bootstrap_ci95(few) == bootstrap_ci95(few)  # seeded: the report is reproducible


def test_shipped_reranker_card_is_rendered_from_its_eval_and_training_records() -> None:
    model = ROOT / "models" / "rerank-hash-nano"
    notes = (ROOT / "training" / "RERANK_CARD_NOTES.md").read_text()
    card = (model / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert card == render(model, notes)  # no number in the card was typed by hand
    wikiqa = json.loads((model / "eval.json").read_text())["wikiqa"]
    lo, hi = wikiqa["onnx"]["map_ci95"]
    assert lo < wikiqa["onnx"]["map"] < hi
    assert f"{wikiqa['onnx']['map']:.4f} [{lo:.3f}, {hi:.3f}]" in card


def test_smoke_evaluation_of_the_shipped_reranker() -> None:
    model = ROOT / "models" / "rerank-hash-nano"
    before = (model / "eval.json").read_bytes()
    result = evaluate(model, backends=("onnx",), smoke=True, split="dev")
    wikiqa, pooled = result["wikiqa"], result["pooled_bm25_top100"]
    assert 0.0 < wikiqa["onnx"]["map"] <= 1.0 and 0.0 < wikiqa["onnx"]["mrr"] <= 1.0
    lo, hi = wikiqa["onnx"]["map_ci95"]
    assert lo <= wikiqa["onnx"]["map"] <= hi
    assert sum(t["questions"] for t in wikiqa["onnx"]["by_type"].values()) == wikiqa["questions"]
    assert {"bm25", "rerank_onnx"} <= set(pooled) and 0.0 < pooled["bm25_recall@100"] <= 1.0
    gain_lo, gain_hi = pooled["rerank_onnx"]["ndcg@10_minus_bm25_ci95"]
    assert gain_lo <= pooled["rerank_onnx"]["ndcg@10"] - pooled["bm25"]["ndcg@10"] <= gain_hi
    assert (model / "eval.json").read_bytes() == before  # dev evaluations never overwrite the test report
