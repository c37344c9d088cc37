"""Question rewording: swaps content words for MiniLM word-embedding neighbours, never the question's type."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.question_augment import KEPT_WORDS, QuestionRewriter, cached_neighbours
from training.rerank_data import load_wikiqa_train


@pytest.fixture(scope="module")
def neighbours(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    return cached_neighbours(tmp_path_factory.mktemp("neighbours"))


def test_neighbours_are_close_words_of_the_vocabulary(neighbours: dict[str, list[str]]) -> None:
    assert "movies" in neighbours["movie"] and "biggest" in neighbours["largest"]
    assert all(1 <= len(v) <= 3 and word not in v for word, v in neighbours.items())


def test_a_cached_table_is_read_not_recomputed(tmp_path: Path) -> None:
    (tmp_path / "word-neighbours-0.6-3.json").write_text('{"cave": ["caves"]}')
    assert cached_neighbours(tmp_path) == {"cave": ["caves"]}


def test_rewording_keeps_the_type_and_the_length(neighbours: dict[str, list[str]]) -> None:
    rewrite = QuestionRewriter(neighbours, word_rate=0.3, seed=4)
    questions = [q.text for q in load_wikiqa_train()[:300]]
    changed = 0
    for question in questions:
        before, after = question.split(), rewrite(question).split()
        assert len(after) == len(before)
        for old, new in zip(before, after, strict=True):
            if old != new:
                assert old.lower() not in KEPT_WORDS and new in neighbours[old.lower()]
        changed += before != after
    assert changed > 0.8 * len(questions)  # nearly every question has a word with a close neighbour


def test_same_seed_same_rewording_and_nothing_to_swap_is_left_alone(neighbours: dict[str, list[str]]) -> None:
    questions = [q.text for q in load_wikiqa_train()[:50]]
    rewrite = QuestionRewriter(neighbours, 0.3, seed=1)
    first = [rewrite(q) for q in questions]
    again = QuestionRewriter(neighbours, 0.3, seed=1)
    assert [again(q) for q in questions] == first
    assert again("how many are there ?") == "how many are there ?"
