"""The `hashrank` CLI (`python -m app`): scoring a real JSON-lines file, info, and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from app.__main__ import main
from app.scorer import Scorer
from tests.conftest import ROOT
from tests.modeling.builders import random_nano_dir, sts_dev_pairs

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_nano_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str]]]:
    """60 STS-B dev pairs, alternating {"a","b"} and {"query","document"} lines, with a blank line inside."""
    pairs = sts_dev_pairs(60)
    lines = [json.dumps({"a": a, "b": b} if i % 2 else {"query": a, "document": b}) for i, (a, b) in enumerate(pairs)]
    lines.insert(30, "")
    path = tmp_path_factory.mktemp("cli") / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, pairs


def hashrank(*args: str, stdin: Path | None = None) -> subprocess.CompletedProcess[str]:
    with open(stdin or os.devnull, encoding="utf-8") as fh:
        return subprocess.run(
            [sys.executable, "-m", "app", *args],
            stdin=fh,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=ENV,
            timeout=300,
        )


def scores_of(result: subprocess.CompletedProcess[str]) -> np.ndarray:
    assert result.returncode == 0, result.stderr
    return np.array([json.loads(line)["score"] for line in result.stdout.splitlines()])


def test_score_file_with_both_backends(model_dir: Path, pairs_file: tuple[Path, list[tuple[str, str]]]) -> None:
    path, pairs = pairs_file
    onnx_scores = scores_of(hashrank("score", "--model", str(model_dir), stdin=path))
    torch_scores = scores_of(hashrank("score", "--model", str(model_dir), "--backend", "torch", stdin=path))
    assert len(onnx_scores) == len(torch_scores) == 60  # the blank line yields no score
    # In order: the same numbers as the Python API gives for the same pairs.
    np.testing.assert_allclose(onnx_scores, Scorer.load(model_dir, "onnx").score(pairs), rtol=0, atol=1e-12)
    assert np.abs(onnx_scores - torch_scores).max() <= 1e-4


def test_score_int8_raw_and_options(model_dir: Path, pairs_file: tuple[Path, list[tuple[str, str]]]) -> None:
    path, pairs = pairs_file
    args = ("score", "--model", str(model_dir), "--int8", "--raw-scores", "--max-length", "24", "--batch-size", "7")
    logits = scores_of(hashrank(*args, stdin=path))
    # Another batch size on purpose: int8's activation scales are fixed at export, so a pair's logit does
    # not depend on its batch-mates.
    want = Scorer.load(model_dir, "onnx-int8", max_length=24).score(pairs, raw=True, batch_size=32)
    np.testing.assert_allclose(logits, want, rtol=0, atol=1e-6)
    assert not np.all((logits > 0) & (logits < 1))  # logits, not sigmoid scores


def test_info_prints_the_architecture(model_dir: Path) -> None:
    result = hashrank("info", "--model", str(model_dir))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["parameters"] == 969_761
    assert (info["model_type"], info["hidden_size"], info["num_hidden_layers"], info["projections"]) == (
        "bert_hash",
        128,
        2,
        16,
    )
    assert info["max_length"] == 512 and info["files"]["model.onnx"] > 0


def test_bad_model_dir_is_one_error_line_in_a_real_process(model_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(model_dir, tmp_path / "m")
    (tmp_path / "m" / "model.onnx").unlink()
    result = hashrank("score", "--model", str(tmp_path / "m"), stdin=None)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'm' / 'model.onnx'}: missing model.onnx; "
        f"create it with `hashrank export-onnx {tmp_path / 'm'}`"
    ]


def _set_tensor(name: str, make: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        tensors = load_file(str(d / "model.safetensors"))
        tensors[name] = make(tensors.get(name, np.zeros(3, np.float32)))
        save_file(tensors, str(d / "model.safetensors"))

    return mutate


def _set_config(key: str, value: object) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        config = json.loads((d / "config.json").read_text(encoding="utf-8"))
        config[key] = value
        (d / "config.json").write_text(json.dumps(config), encoding="utf-8")

    return mutate


@pytest.mark.parametrize(
    ("backend", "mutate", "message"),
    [
        ("torch", lambda d: (d / "model.safetensors").unlink(), "model.safetensors: missing model.safetensors"),
        ("onnx", lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json: missing tokenizer.json"),
        ("onnx", lambda d: (d / "model.int8.onnx").unlink(), None),  # fp32 does not need the int8 file
        ("torch", _set_tensor("classifier.weight", lambda w: w[:, :-1]), "'classifier.weight' has shape (1, 127)"),
        ("torch", _set_tensor("cls.predictions.bias", lambda w: w), "unexpected tensor 'cls.predictions.bias'"),
        ("onnx", _set_config("model_type", "roberta"), "unknown model_type 'roberta'"),
    ],
    ids=["no-safetensors", "no-tokenizer", "no-int8-is-fine", "wrong-shape", "unexpected-key", "unknown-model-type"],
)
def test_bad_model_dirs(
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    mutate: Callable[[Path], None],
    message: str | None,
) -> None:
    bad = tmp_path / "m"
    shutil.copytree(model_dir, bad)
    mutate(bad)
    monkeypatch.setattr(sys, "stdin", open(os.devnull, encoding="utf-8"))  # noqa: SIM115 (pytest closes it)
    code = main(["score", "--model", str(bad), "--backend", backend])
    out, err = capsys.readouterr()
    if message is None:
        assert code == 0 and err == ""
        return
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("error: ") and message in line, line


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ('{"a": "x", "b": "y"}\n\n{"a": "x", "b": \n', "stdin line 3: not valid JSON"),
        ('["a", "b"]\n', "stdin line 1: expected a JSON object"),
        ('{"a": "x", "b": "y"}\n{"a": "x", "c": "y"}\n', "stdin line 2: needs keys 'a' and 'b'"),
        ('{"query": "x", "document": 3}\n', "stdin line 1: 'query' and 'document' must be strings"),
    ],
)
def test_bad_input_lines_name_the_line(
    model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    stdin: str,
    message: str,
) -> None:
    (tmp_path / "in.jsonl").write_text(stdin, encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", open(tmp_path / "in.jsonl", encoding="utf-8"))  # noqa: SIM115
    assert main(["score", "--model", str(model_dir)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == [f"error: {message}" + err.split(message, 1)[1].rstrip("\n")]


def test_usage_errors(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", "--model", str(model_dir), "--backend", "torch", "--int8"]) == 2
    assert main(["export-onnx", str(tmp_path / "nope")]) == 2
    assert main(["info", "--model", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: --int8 needs --backend onnx (the int8 model is an ONNX graph)",
        f"error: {tmp_path / 'nope'}: not a directory",
        f"error: {tmp_path / 'config.json'}: missing config.json",
    ]
    with pytest.raises(SystemExit):  # argparse's own usage error (exit 2)
        main(["score", "--model", str(model_dir), "--batch-size", "0"])


def test_console_script_is_the_same_entry_point() -> None:
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["hashrank"] == "app.__main__:main"  # what `python -m app` runs
