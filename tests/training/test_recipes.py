"""The recipe files: every shipped model's recipe loads, and a recipe that says something the trainer does not
understand is refused before anything trains."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.conftest import RERANK_MODEL_DIR
from training.rerank_hyper import Hyper
from training.train import RECIPES_DIR, load_recipe, stage_settings


def test_every_shipped_model_has_a_recipe_whose_stages_load() -> None:
    names = sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))
    assert names == ["rerank-hash-nano", "sts-hash-nano"]
    rerank = load_recipe("rerank-hash-nano")
    (stage,) = rerank.stages
    hp = stage_settings(stage)
    assert isinstance(hp, Hyper) and hp.insuranceqa_teacher and hp.cross_weight == 1.0
    assert stage.init_from == "models/sts-hash-nano"


def test_the_shipped_relevance_weights_were_trained_by_the_recipe_on_file() -> None:
    (stage,) = load_recipe("rerank-hash-nano").stages
    shipped = json.loads((RERANK_MODEL_DIR / "training.json").read_text())["hyper"]
    assert shipped == asdict(stage_settings(stage))


def _write(tmp_path: Path, stage: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(f'model = "m"\n\n[[stage]]\n{stage}\n')
    return path


@pytest.mark.parametrize(
    ("stage", "error"),
    [
        ('name = "a"\ntrainer = "wikiqa-lists"\ninit_from = "models/sts-hash-nano"\nstepz = 10', TypeError),
        ('name = "a"\ntrainer = "wikiqa-lists"\nsteps = 10', ValueError),  # nothing to continue from
        ('name = "a"\ntrainer = "wikiqa-lists"\ninit_from = "previous"', ValueError),  # no stage before it
        ('name = "a"\ntrainer = "gradient-boosting"\ninit_from = "models/sts-hash-nano"', ValueError),
    ],
)
def test_a_recipe_the_trainers_do_not_understand_is_refused(tmp_path: Path, stage: str, error: type) -> None:
    with pytest.raises(error):
        load_recipe(_write(tmp_path, stage))


def test_an_sts_round_with_an_option_training_sts_lacks_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        load_recipe(_write(tmp_path, 'name = "a"\ntrainer = "sts"\ndistil_pairs = 10'))
