"""The relevance trainer end to end on a tiny budget (sts-hash-nano init, real data), plus its pieces."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from app.modeling.checkpoint import load_model
from training.relevance_lists import InsuranceQALists, ListSampler, PooledWikiQALists, WikiQALists
from training.relevance_train import STS_MODEL, RelevanceRecipe, list_loss, passes_rule, train
from training.train import load_recipe, stage_settings

DEFAULTS = RelevanceRecipe(name="defaults")


def shipped() -> RelevanceRecipe:
    """rerank-hash-nano's second stage, as its recipe file gives it."""
    (stage,) = [s for s in load_recipe("rerank-hash-nano").stages if s.trainer == "mixed-lists"]
    return stage_settings(stage)


def test_list_loss_prefers_the_gold_order() -> None:
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0])
    good = list_loss(torch.tensor([-2.0, 3.0, 2.0, -1.0]), labels, None, DEFAULTS)
    bad = list_loss(torch.tensor([3.0, -2.0, -1.0, 2.0]), labels, None, DEFAULTS)
    assert 0 < good < bad


def test_list_loss_follows_the_teacher_where_there_is_no_gold() -> None:
    recipe = dataclasses.replace(DEFAULTS, teacher="splade", teacher_temperature=2.0)
    labels = torch.zeros(3)
    teacher = torch.tensor([10.0, 4.0, 0.0])
    agree = list_loss(torch.tensor([5.0, 2.0, 0.0]), labels, teacher, recipe)
    disagree = list_loss(torch.tensor([0.0, 2.0, 5.0]), labels, teacher, recipe)
    without = list_loss(torch.tensor([5.0, 2.0, 0.0]), labels, None, recipe)
    # KL(teacher || model) is 0 when the model's softmax equals softmax(teacher / 2): only the BCE is left.
    assert agree == pytest.approx(float(without), abs=1e-6) and disagree > agree


@pytest.mark.slow  # loads InsuranceQA train and its 27,413 answers (~10 s)
def test_sampler_is_a_function_of_seed_and_step() -> None:
    make = lambda: ListSampler(WikiQALists(), PooledWikiQALists(), InsuranceQALists(), (2, 3, 2), seed=3,  # noqa: E731
                               insuranceqa_questions=50)
    a, b = make(), make()
    assert a.step(7) == b.step(7) and a.step(7) != a.step(8)
    lists = a.step(0)
    assert [x.source for x in lists] == ["wikiqa"] * 2 + ["insuranceqa"] * 2 + ["wikiqa"] * 3
    for x in lists[:4]:
        assert len(x.docs) == len(x.labels) and 1 <= sum(x.labels) < len(x.labels)
    assert len(lists[2].docs) == sum(lists[2].labels) + 6
    for x in lists[4:]:  # pooled: 14 of the BM25 top-100, every correct sentence retrieved kept
        assert len(x.docs) == 14 and len(set(x.docs)) == 14
    # Adding the pooled source leaves the other sources' lists as they were.
    without = ListSampler(WikiQALists(), PooledWikiQALists(), InsuranceQALists(), (2, 0, 2), seed=3,
                          insuranceqa_questions=50)
    assert without.step(7) == a.step(7)[:4]


@pytest.mark.slow
def test_tiny_run_trains_checkpoints_resumes_and_saves(tmp_path: Path) -> None:
    recipe = dataclasses.replace(
        DEFAULTS, steps=2, warmup=1, eval_every=2, wikiqa_lists=1, insuranceqa_lists=1,
        insuranceqa_questions=20, valid_questions=2, dev_questions=3,
    )
    report = train(recipe, STS_MODEL, tmp_path)
    (entry,) = report["history"]
    assert entry["step"] == 2 and 0 <= entry["wikiqa_dev_map"] <= 1 and 0 <= entry["insuranceqa_valid_map"] <= 1
    model = load_model(tmp_path / "model")
    assert model.num_parameters() == 969_761
    assert json.loads((tmp_path / "training.json").read_text())["init"] == "models/sts-hash-nano"
    again = train(recipe, STS_MODEL, tmp_path)  # the checkpoint is at the last step: nothing left to train
    assert again["history"] == report["history"]


@pytest.mark.slow
def test_tiny_run_with_pooled_lists_selects_on_three_views(tmp_path: Path) -> None:
    """The shipped v2 recipe's list mix and selection (its SPLADE-tiny teacher needs the ~12-minute cache of
    `training.relevance_teacher`; its loss is tested above)."""
    recipe = dataclasses.replace(
        shipped(), teacher=None, guard=False, steps=2, warmup=1, eval_every=2,
        wikiqa_lists=1, pooled_lists=1, insuranceqa_lists=1, insuranceqa_questions=20, valid_questions=2,
        dev_questions=3,
    )
    (entry,) = train(recipe, STS_MODEL, tmp_path)["history"]
    views = ("wikiqa_dev_map", "insuranceqa_valid_map", "wikiqa_dev_pooled_ndcg@10")
    assert all(0 <= entry[k] <= 1 for k in views)
    assert entry["selection"] == pytest.approx(sum(entry[k] for k in views) / 3, abs=1e-4)
    record = json.loads((tmp_path / "model" / "training.json").read_text())  # the model carries its record
    assert record["recipe"]["pooled_lists"] == 1 and record["history"] == [entry]


def test_the_shipping_rule_needs_gains_on_both_new_views_and_bounds_the_wikiqa_loss() -> None:
    recipe = shipped()
    assert recipe.guard and recipe.teacher == "splade" and recipe.teacher_sources == ("wikiqa",)
    base = {"wikiqa_dev_map": 0.73, "insuranceqa_valid_map": 0.33, "wikiqa_dev_pooled_ndcg@10": 0.678}
    assert passes_rule({**base, "insuranceqa_valid_map": 0.37, "wikiqa_dev_pooled_ndcg@10": 0.68,
                        "wikiqa_dev_map": 0.721}, base, recipe)
    assert not passes_rule({**base, "insuranceqa_valid_map": 0.37, "wikiqa_dev_pooled_ndcg@10": 0.68,
                            "wikiqa_dev_map": 0.719}, base, recipe)  # more than 0.01 behind on WikiQA dev
    assert not passes_rule({**base, "insuranceqa_valid_map": 0.40}, base, recipe)  # pooled dev not ahead
    assert not passes_rule({**base, "wikiqa_dev_pooled_ndcg@10": 0.70}, base, recipe)  # InsuranceQA not ahead


@pytest.mark.slow
def test_tiny_guarded_run_evaluates_step_0_and_keeps_only_models_that_pass_the_rule(tmp_path: Path) -> None:
    """The v2 recipe's selection: a step-0 baseline, then only evaluations that pass the shipping rule (here made
    impossible to pass, so no model may be written). Its SPLADE-tiny teacher needs the ~12-minute cache of
    `training.relevance_teacher`; its loss is tested above."""
    recipe = dataclasses.replace(
        shipped(), teacher=None, steps=2, warmup=1, eval_every=2, wikiqa_lists=1,
        pooled_lists=1, insuranceqa_lists=1, insuranceqa_questions=20, valid_questions=2, dev_questions=3,
        wikiqa_tolerance=-1.0,
    )
    with pytest.raises(SystemExit, match="no evaluation passed the shipping rule"):
        train(recipe, STS_MODEL, tmp_path)
    history = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["history"]
    assert [h["step"] for h in history] == [0, 2] and not (tmp_path / "model").exists()
    assert (tmp_path / "ema-2.pt").is_file() and not (tmp_path / "best.pt").exists()
    unguarded = dataclasses.replace(recipe, name="unguarded", guard=False)
    report = train(unguarded, STS_MODEL, tmp_path / "unguarded")
    assert [h["step"] for h in report["history"]] == [2] and report["best_step"] == 2
    assert load_model(tmp_path / "unguarded" / "model").num_parameters() == 969_761
