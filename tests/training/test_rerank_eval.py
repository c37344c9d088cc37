"""The reranker evaluation on the real shipped model (dev split, a few questions: no eval.json is written)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.rerank_data import Question, map_by_type, question_type
from training.rerank_eval import evaluate

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


def test_smoke_evaluation_of_the_shipped_reranker() -> None:
    model = ROOT / "models" / "rerank-hash-nano"
    before = (model / "eval.json").read_bytes()
    result = evaluate(model, backends=("onnx",), smoke=True, split="dev")
    wikiqa, pooled = result["wikiqa"], result["pooled_bm25_top100"]
    assert 0.0 < wikiqa["onnx"]["map"] <= 1.0 and 0.0 < wikiqa["onnx"]["mrr"] <= 1.0
    assert sum(t["questions"] for t in wikiqa["onnx"]["by_type"].values()) == wikiqa["questions"]
    assert {"bm25", "rerank_onnx"} <= set(pooled) and 0.0 < pooled["bm25_recall@100"] <= 1.0
    assert (model / "eval.json").read_bytes() == before  # dev evaluations never overwrite the test report
