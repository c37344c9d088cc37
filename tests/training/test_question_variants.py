"""Question rewrites for distillation: each kind appears, none repeats the question, and a seed fixes them."""

from __future__ import annotations

import random

from training.question_variants import question_variants


def test_each_rewrite_kind() -> None:
    variants = question_variants("when was the eiffel tower built ?", random.Random(0), swaps=2, drops=2)
    assert len(variants) == 5
    swapped = [v for v in variants if v.endswith("the eiffel tower built ?") and not v.startswith("when")]
    assert len(swapped) == 2  # the wh-word changed, the rest kept
    dropped = [v for v in variants if v.startswith("when was") and v != "when was the eiffel tower built ?"]
    assert len(dropped) == 2 and all(len(v.split()) == 6 for v in dropped)  # one content word less
    assert "eiffel tower built" in variants  # keywords: no wh-word, no stopwords


def test_two_word_wh_phrase_is_swapped_whole() -> None:
    variants = question_variants("how long is the nile river", random.Random(1), swaps=3, drops=0)
    swaps = [v for v in variants if v.endswith(" is the nile river")]
    assert len(swaps) == 3 and not any(v.split()[1] == "long" for v in swaps)  # "how long" -> one word


def test_no_duplicates_and_deterministic() -> None:
    question = "What is the capital of France"
    first = question_variants(question, random.Random(7))
    assert first == question_variants(question, random.Random(7))
    assert len({v.lower() for v in first}) == len(first) and question.lower() not in {v.lower() for v in first}


def test_question_without_wh_word_gets_drops_and_keywords_only() -> None:
    variants = question_variants("capital of france", random.Random(0))
    assert variants and all(v.split()[0] not in {"what", "who", "where"} for v in variants)
