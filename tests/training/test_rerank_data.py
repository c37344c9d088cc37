"""Answer-type swaps of train questions and the contrast loss on them (the rerank recipe's type lists)."""

from __future__ import annotations

import random

import torch

from training.rerank import type_contrast
from training.rerank_data import swap_answer_type
from training.rerank_hyper import Hyper


def test_swap_answer_type_changes_only_the_wh_phrase() -> None:
    for seed in range(30):
        swapped = swap_answer_type("how many people were killed in the bombing", random.Random(seed))
        assert swapped is not None and swapped.endswith(" people were killed in the bombing")
        assert not swapped.startswith("how many")  # a count is never swapped for a count
        assert not swap_answer_type("how did anne frank die", random.Random(seed)).startswith(("how did", "why "))
    assert swap_answer_type("what is the capital of peru", random.Random(0)) is None  # type named later, if at all
    assert swap_answer_type("", random.Random(0)) is None


def test_type_contrast_wants_the_gold_to_lose_mass_under_the_swap() -> None:
    gold = torch.tensor([True, False, False])
    real = torch.tensor([2.0, 0.0, 0.0], requires_grad=True)
    blind = torch.tensor([2.0, 0.0, 0.0], requires_grad=True)  # the swap changes nothing: the type is ignored
    aware = torch.tensor([-3.0, 0.0, 0.0])  # the swapped question's answer is elsewhere
    hp = Hyper(type_weight=1.0, type_margin=0.5)
    assert type_contrast(real, aware, gold, hp) < 0.1 < type_contrast(real, blind, gold, hp)
    type_contrast(real, blind, gold, hp).backward()
    assert real.grad is not None and real.grad[0] < 0  # the real question's gold is pushed up...
    assert blind.grad is not None and blind.grad[0] > 0  # ...and the swapped one's down
