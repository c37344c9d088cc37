"""The relevance trainer end to end on a tiny budget (sts-hash-nano init, real data), plus its pieces."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.modeling.checkpoint import load_model
from training.relevance_lists import InsuranceQALists, ListSampler, WikiQALists
from training.relevance_train import RECIPES, list_loss, train
from training.splade_init import init_from_splade, svd_codes
from training.teacher_fetch import SPLADE_TINY, TEACHER_CACHE, verify


def test_list_loss_prefers_the_gold_order() -> None:
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0])
    good = list_loss(torch.tensor([-2.0, 3.0, 2.0, -1.0]), labels, 0.1)
    bad = list_loss(torch.tensor([3.0, -2.0, -1.0, 2.0]), labels, 0.1)
    assert 0 < good < bad


@pytest.mark.slow  # loads InsuranceQA train and its 27,413 answers (~10 s)
def test_sampler_is_a_function_of_seed_and_step() -> None:
    make = lambda: ListSampler(WikiQALists(), InsuranceQALists(), 2, 2, seed=3, insuranceqa_questions=50)  # noqa: E731
    a, b = make(), make()
    assert a.step(7) == b.step(7) and a.step(7) != a.step(8)
    lists = a.step(0)
    assert [x.source for x in lists] == ["wikiqa", "wikiqa", "insuranceqa", "insuranceqa"]
    for x in lists:
        assert len(x.docs) == len(x.labels) and 1 <= sum(x.labels) < len(x.labels)
    assert len(lists[2].docs) == sum(lists[2].labels) + 6


def test_svd_codes_rebuild_the_best_rank_p_table() -> None:
    rng = np.random.default_rng(0)
    table = (rng.normal(size=(500, 3)) @ rng.normal(size=(3, 12)) + rng.normal(size=12)).astype(np.float32)
    codes, weight, bias, kept = svd_codes(table, 3)
    assert codes.shape == (500, 3) and weight.shape == (12, 3) and bias.shape == (12,)
    assert kept == pytest.approx(1.0, abs=1e-6) and codes.std() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(codes @ weight.T + bias, table, atol=1e-4)


@pytest.mark.slow
def test_tiny_run_trains_checkpoints_resumes_and_saves(tmp_path: Path) -> None:
    recipe = dataclasses.replace(
        RECIPES["sts-init"], steps=2, warmup=1, eval_every=2, wikiqa_lists=1, insuranceqa_lists=1,
        insuranceqa_questions=20, valid_questions=2, dev_questions=3,
    )
    report = train(recipe, tmp_path)
    (entry,) = report["history"]
    assert entry["step"] == 2 and 0 <= entry["wikiqa_dev_map"] <= 1 and 0 <= entry["insuranceqa_valid_map"] <= 1
    model = load_model(tmp_path / "model")
    assert model.num_parameters() == 969_761
    assert json.loads((tmp_path / "training.json").read_text())["recipe"]["init"] == "sts"
    again = train(recipe, tmp_path)  # the checkpoint is at the last step: nothing left to train
    assert again["history"] == report["history"]


@pytest.mark.slow
@pytest.mark.skipif(bool(verify(SPLADE_TINY, TEACHER_CACHE / SPLADE_TINY.name)),
                    reason="SPLADE-tiny not fetched (python -m training.teacher_fetch splade-tiny)")
def test_splade_init_copies_the_body_and_factorises_the_table() -> None:
    from safetensors.numpy import load_file

    from app.modeling.config import PRESETS

    model, report = init_from_splade(PRESETS["nano"])
    teacher = load_file(str(TEACHER_CACHE / SPLADE_TINY.name / "model.safetensors"))
    state = model.state_dict()
    key = "bert.encoder.layer.1.attention.self.query.weight"
    np.testing.assert_array_equal(state[key].numpy(), teacher[key])
    assert report["fresh"] == ["bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight",
                               "classifier.bias"]
    assert report["svd_variance_kept"] == pytest.approx(0.317, abs=0.001)
    ids = torch.tensor([[101, 2129, 2146, 2079, 8870, 3637, 102]])
    ours = model.bert.embeddings.word_embeddings(ids)[0].detach().numpy()
    theirs = teacher["bert.embeddings.word_embeddings.weight"][ids[0].numpy()]
    # The orthogonal projection of each row (around the mean row) onto the top-16 directions: the residual is
    # orthogonal to the part kept, and the part kept is no longer than the row.
    mean = teacher["bert.embeddings.word_embeddings.weight"].mean(0)
    kept_part, residual = ours - mean, theirs - ours
    assert np.abs((kept_part * residual).sum(1)).max() < 1e-4 * np.linalg.norm(theirs - mean, axis=1).max() ** 2
    assert (np.linalg.norm(kept_part, axis=1) <= np.linalg.norm(theirs - mean, axis=1) + 1e-5).all()
