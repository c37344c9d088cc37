"""The answer-type rule behind the reranker teacher's --type-rule-weight."""

from __future__ import annotations

import numpy as np
import pytest

from training.answer_types import answer_type_match, expected_answer_type, sentence_has_type
from training.rerank_data import load_wikiqa_train


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("when was the eiffel tower built", "time"),
        ("What year did the Titanic sink?", "time"),
        ("in what century did rome fall", "time"),
        ("how many people were killed in the oklahoma city bombing", "count"),
        ("how old is the earth", "count"),
        ("what is the population of canada", "count"),
        ("how did the titanic sink", None),  # a process: no rule reads it
        ("who wrote hamlet", None),
        ("what is the capital of peru", None),
    ],
)
def test_expected_answer_type(question: str, kind: str | None) -> None:
    assert expected_answer_type(question) == kind


def test_sentences_carry_dates_and_numbers() -> None:
    assert sentence_has_type("Construction began in 1887 .", "time")
    assert sentence_has_type("It was signed in March .", "time")
    assert sentence_has_type("Rome fell in the 5th century .", "time")
    assert not sentence_has_type("The tower is made of wrought iron .", "time")
    assert not sentence_has_type("Its 324 metres make it tall .", "time")  # a number is not a date
    assert sentence_has_type("The blast claimed 168 lives .", "count")
    assert sentence_has_type("There have been four successful Mars rovers .", "count")
    assert not sentence_has_type("The bombing was a domestic terrorist attack .", "count")


def test_match_marks_only_the_typed_sentences() -> None:
    sentences = ["The Oklahoma City bombing was a domestic terrorist attack .", "The blast claimed 168 lives ."]
    assert answer_type_match("how many people died in the oklahoma city bombing", sentences).tolist() == [0.0, 1.0]
    assert answer_type_match("who bombed oklahoma city", sentences).tolist() == [0.0, 0.0]


def test_gold_sentences_carry_the_type_far_more_often_on_wikiqa_train() -> None:
    gold, other = [], []
    for q in load_wikiqa_train():
        if q.has_answer and expected_answer_type(q.text):
            match = answer_type_match(q.text, q.sentences)
            labels = np.asarray(q.labels) > 0
            gold.extend(match[labels])
            other.extend(match[~labels])
    assert len(gold) > 150
    assert np.mean(gold) > 0.85 and np.mean(other) < 0.5  # 0.93 / 0.40 when written
