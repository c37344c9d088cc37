"""Settings: HASHRANK_* variables, `hashrank serve` flags, model lists and the cross-field checks."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.commands import serve
from app.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("HASHRANK_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = Settings()
    assert (s.host, s.port, s.backend, s.workers) == ("0.0.0.0", 8080, "onnx-int8", 1)
    assert (s.max_batch_pairs, s.max_batch_tokens, s.max_wait_ms) == (None, 32 * 128, 0.0)
    assert s.models == {}


@pytest.mark.parametrize(("threads", "pairs"), [(1, 16), (2, 32), (4, 32)])
def test_batch_pairs_default_follows_the_threads_of_a_pass(threads: int, pairs: int) -> None:
    assert Settings(threads=threads).resolved_max_batch_pairs() == pairs
    assert Settings(threads=threads, max_batch_pairs=8).resolved_max_batch_pairs() == 8


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "sts=models/sts-hash-nano,rerank=models/rerank-hash-nano",
            {"sts": "models/sts-hash-nano", "rerank": "models/rerank-hash-nano"},
        ),
        (' {"a": "/m/a", "b": "/m/b"} ', {"a": "/m/a", "b": "/m/b"}),
        ("/srv/models/sts-hash-nano", {"sts-hash-nano": "/srv/models/sts-hash-nano"}),
        (" a = x , ", {"a": "x"}),
        ("", {}),
    ],
)
def test_models_from_env(monkeypatch: pytest.MonkeyPatch, raw: str, expected: dict[str, str]) -> None:
    monkeypatch.setenv("HASHRANK_MODELS", raw)
    assert Settings().models == {k: Path(v) for k, v in expected.items()}


def test_env_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HASHRANK_PORT", "9000")
    monkeypatch.setenv("HASHRANK_MAX_WAIT_MS", "0.5")
    monkeypatch.setenv("HASHRANK_WARMUP", "false")
    s = Settings()
    assert (s.port, s.max_wait_ms, s.warmup) == (9000, 0.5, False)


@pytest.mark.parametrize(
    "bad",
    [
        {"port": 70000},
        {"max_batch_pairs": 0},
        {"max_wait_ms": -1},
        {"backend": "tensorrt"},
        {"max_pairs_per_request": 5000, "max_queue_pairs": 100},
        {"timeout_ms": 10_000, "max_timeout_ms": 1000},
        {"models": {"a": "x"}, "default_score_model": "b"},
        {"models": "=path"},
    ],
)
def test_invalid_combinations_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)  # type: ignore[arg-type]


def test_default_models_are_found_under_model_dir(tmp_path: Path) -> None:
    (tmp_path / "sts-hash-nano").mkdir()
    s = Settings(model_dir=tmp_path)
    assert s.resolved_models() == {"sts-hash-nano": tmp_path / "sts-hash-nano"}
    assert s.default_models(["sts-hash-nano"]) == ("sts-hash-nano", "sts-hash-nano")
    (tmp_path / "rerank-hash-nano").mkdir()
    names = list(s.resolved_models())
    assert names == ["sts-hash-nano", "rerank-hash-nano"]
    assert s.default_models(names) == ("sts-hash-nano", "rerank-hash-nano")


def test_relative_model_paths_resolve_against_model_dir(tmp_path: Path) -> None:
    (tmp_path / "models" / "mine").mkdir(parents=True)
    s = Settings(model_dir=tmp_path / "models", models="a=mine,b=models/mine")
    assert s.resolved_models() == {"a": tmp_path / "models" / "mine", "b": tmp_path / "models" / "mine"}


def test_serve_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HASHRANK_PORT", "9000")
    monkeypatch.setenv("HASHRANK_MAX_BATCH_PAIRS", "16")
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-level")  # the top-level option must survive the subcommand's own
    serve.add_parser(parser.add_subparsers())
    args = parser.parse_args(["--log-level", "INFO", "serve", "--port", "8181", "--no-warmup", "--models", "a=x"])
    assert args.log_level == "INFO"
    s = Settings(**serve.overrides_from(args))
    assert (s.port, s.max_batch_pairs, s.warmup, s.models) == (8181, 16, False, {"a": Path("x")})


@pytest.mark.parametrize(
    ("settings", "level"),
    [({}, "INFO"), ({"log_level": "warning"}, "WARNING"), ({"access_log": False}, "CRITICAL")],
)
def test_the_access_log_follows_the_log_level_and_its_switch(settings: dict[str, object], level: str) -> None:
    config = serve._log_config(Settings(**settings))
    assert config["loggers"]["hashrank.access"]["level"] == level
