"""InsuranceQA v1 read in place from ../shared/data/insuranceqa (the real files)."""

from __future__ import annotations

import pytest

from training import insuranceqa


def test_splits_have_the_documented_sizes() -> None:
    sizes = {split: len(insuranceqa.load_split(split)) for split in insuranceqa.SPLITS}
    assert sizes == {"train": 12_889, "valid": 2_000, "test": 2_000}
    train = insuranceqa.load_split("train")
    assert sum(len(q.answers) for q in train) == 21_325
    assert all(len(q.negatives) == 200 for q in train)


def test_questions_put_answers_first_and_cut_the_negatives() -> None:
    qs = insuranceqa.questions("test", negatives=50, limit=500)
    assert len(qs) == 500
    first = qs[0]
    assert first.qid == "iqa-test-0"
    assert "  " not in first.text and first.text == first.text.strip()
    n_pos = sum(first.labels)
    assert n_pos >= 1 and first.labels[:n_pos] == [1] * n_pos
    assert len(first.sentences) == n_pos + 50
    raw = insuranceqa.load_split("test")[0]
    assert first.sentence_ids == list(raw.answers) + list(raw.negatives[:50])
    assert all(s and "  " not in s for s in first.sentences)


def test_unknown_split_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown InsuranceQA split"):
        insuranceqa.load_split("dev")
