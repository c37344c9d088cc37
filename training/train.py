"""Train a shipped model from its recipe file, training/recipes/<model>.toml.

    python -m training.train sts-hash-nano --out models/sts-hash-nano        # make train-sts
    python -m training.train rerank-hash-nano --out models/rerank-hash-nano  # make train-rerank (after its caches)
    python -m training.train rerank-hash-nano --out /tmp/m --smoke           # every stage on a tiny budget

A recipe is a list of stages run in order, each starting from the model of the stage before ("previous") or
from a model directory of the repository. A stage names its trainer:
- `sts`: training.sts (pair distillation + STS-B fine-tuning); the stage's other keys are its options;
- `wikiqa-lists`: training.rerank (WikiQA + InsuranceQA listwise); the other keys are training.rerank_hyper.Hyper
  fields.
A key that the trainer does not know is an error, not a silent default. Each stage writes
<work>/<stage>/model; a stage whose record exists is skipped on a re-run (inside a stage, each trainer resumes
from its own checkpoints), so a stopped recipe resumes. The last stage's model is copied to --out and exported
to ONNX.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from training import teachers
from training.rerank_data import CACHE_DIR, ROOT

RECIPES_DIR = ROOT / "training" / "recipes"
RUNS_DIR = ROOT / "training" / "runs"
Trainer = Literal["sts", "wikiqa-lists"]


@dataclass(frozen=True)
class Stage:
    name: str
    trainer: Trainer
    init_from: str | None  # a repository path, "previous" (the stage before) or None (a fresh init: sts only)
    settings: dict[str, Any]  # the trainer's own parameters, as the recipe file gives them

    def start_model(self, previous: Path | None) -> Path | None:
        """The model directory this stage continues: the stage before's, a repository path, or none."""
        if self.init_from == "previous":
            return previous
        return ROOT / self.init_from if self.init_from else None

    def done_marker(self, stage_dir: Path) -> Path:
        return stage_dir / ("run/report.json" if self.trainer == "sts" else "model/training.json")


@dataclass(frozen=True)
class Recipe:
    model: str
    pool_teachers: tuple[str, ...]
    stages: tuple[Stage, ...]


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Read and check a recipe file (a name means training/recipes/<name>.toml)."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = RECIPES_DIR / f"{name_or_path}.toml"
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    stages = []
    for i, table in enumerate(raw.pop("stage")):
        table = dict(table)
        stage = Stage(table.pop("name"), table.pop("trainer"), table.pop("init_from", None), table)
        if stage.trainer not in ("sts", "wikiqa-lists"):
            raise ValueError(f"{path.name}: stage {stage.name!r} names an unknown trainer {stage.trainer!r}")
        if stage.init_from == "previous" and i == 0:
            raise ValueError(f"{path.name}: the first stage has no previous stage to start from")
        if stage.init_from is None and stage.trainer != "sts":
            raise ValueError(f"{path.name}: stage {stage.name!r} needs init_from (a trained model to continue)")
        stage_settings(stage)  # unknown keys fail here, before anything trains
        stages.append(stage)
    recipe = Recipe(raw.pop("model"), tuple(raw.pop("pool_teachers", ())), tuple(stages))
    if raw:
        raise ValueError(f"{path.name}: unknown top-level keys {sorted(raw)}")
    return recipe


def stage_settings(stage: Stage) -> Any:
    """The stage's typed parameters: a Hyper, or training.sts's argument list."""
    if stage.trainer == "wikiqa-lists":
        from training.rerank_hyper import Hyper

        return Hyper(**stage.settings)
    from training import sts

    argv = [f"--{key.replace('_', '-')}={value}" for key, value in stage.settings.items()]
    sts.parse_args(["--out", "-", *argv])  # exits on an option training.sts does not have
    return argv


@dataclass(frozen=True)
class Caches:
    pool: Path = teachers.CACHE_DIR  # the STS teacher pool's embeddings (training.teachers)
    wikiqa: Path = CACHE_DIR  # WikiQA teacher embeddings and the cross-encoder folds' scores


def run(recipe: Recipe, out: Path, work: Path, caches: Caches, smoke: bool = False) -> Path:
    """Run every stage not yet done, then ship the last stage's model to out. Returns out."""
    if recipe.pool_teachers:
        teachers.main(["--cache", str(caches.pool), "--teachers", ",".join(recipe.pool_teachers)]
                      + (["--smoke"] if smoke else []))
    previous: Path | None = None
    for stage in recipe.stages:
        stage_dir = work / stage.name
        init = stage.start_model(previous)
        if stage.done_marker(stage_dir).is_file():
            logging.info("%s: done earlier (%s)", stage.name, stage.done_marker(stage_dir))
        else:
            _run_stage(stage, init, stage_dir, caches, smoke)
        previous = stage_dir / "model"
    assert previous is not None
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(previous, out)
    return out


def _run_stage(stage: Stage, init: Path | None, stage_dir: Path, caches: Caches, smoke: bool) -> None:
    settings = stage_settings(stage)
    model_dir, run_dir = stage_dir / "model", stage_dir / "run"
    if stage.trainer == "wikiqa-lists":
        from training import rerank

        assert init is not None
        rerank.train(settings.smoke() if smoke else settings, init, model_dir, run_dir, caches.wikiqa,
                     caches.pool, smoke=smoke)
    else:
        from training import sts

        argv = ["--out", str(model_dir), "--run-dir", str(run_dir), "--cache", str(caches.pool), "--no-export",
                *settings]
        if init is not None:
            argv += ["--init-from", str(init)]
        sts.main([*argv, "--smoke"] if smoke else argv)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", help="a recipe name (training/recipes/<name>.toml) or a .toml path")
    ap.add_argument("--out", type=Path, required=True, help="the model directory to write")
    ap.add_argument("--work", type=Path, default=None, help="stage directories (default training/runs/<model>)")
    ap.add_argument("--pool-cache", type=Path, default=Caches.pool, help="the STS teacher pool's cache")
    ap.add_argument("--wikiqa-cache", type=Path, default=Caches.wikiqa, help="the WikiQA teachers' cache")
    ap.add_argument("--smoke", action="store_true", help="tiny data, a few steps per stage (tests)")
    ap.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    recipe = load_recipe(args.recipe)
    work = args.work or RUNS_DIR / (recipe.model + ("-smoke" if args.smoke else ""))
    t0 = time.time()
    run(recipe, args.out, work, Caches(args.pool_cache, args.wikiqa_cache), smoke=args.smoke)
    if not args.no_export:
        from app.modeling.onnx_export import export_onnx

        export_onnx(args.out)
    logging.info("%s done in %.0f s: %s", recipe.model, time.time() - t0, args.out)


if __name__ == "__main__":
    main()

