"""Container-equivalent test: the Dockerfile's exact install (wheel + requirements/serve.lock, no torch)
in a fresh virtualenv, started as the image starts it (`hashrank serve` configured by HASHRANK_* env)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODELS_DIR, ROOT

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def serving_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("install")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(work / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next((work / "dist").glob("hashrank-*.whl"))
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-cache-dir"]
    # Same command as the Dockerfile's runtime stage.
    subprocess.run([*pip, "--constraint", str(ROOT / "requirements" / "serve.lock"), str(wheel)], check=True)
    return env_dir


def test_serving_install_has_no_torch(serving_venv: Path) -> None:
    probe = "import importlib.util as u; print(u.find_spec('torch') is None, u.find_spec('onnxruntime') is not None)"
    out = subprocess.run([str(serving_venv / "bin" / "python"), "-c", probe], capture_output=True, text=True)
    assert out.stdout.split() == ["True", "True"]


@pytest.fixture(scope="module")
def served(serving_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    env = {
        "PATH": f"{serving_venv / 'bin'}:{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
        "HASHRANK_HOST": "127.0.0.1",
        "HASHRANK_PORT": str(port),
        "HASHRANK_MODEL_DIR": str(MODELS_DIR),
    }
    # Run outside the checkout so nothing imports the source tree instead of the installed wheel.
    cwd = tmp_path_factory.mktemp("run")
    proc = subprocess.Popen(["hashrank", "serve"], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "server exited"
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("server never became ready")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_installed_server_scores_and_ranks(served: str) -> None:
    pairs = [["a cat sits", "a cat is sitting"], ["a cat", "stock market"]]
    score = httpx.post(f"{served}/score", json={"pairs": pairs})
    assert score.status_code == 200, score.text
    similar, unrelated = score.json()["scores"]
    assert 0.0 <= unrelated < similar <= 1.0

    docs = ["The stock market fell.", "Cats sleep most of the day.", "Paris is in France."]
    rank = httpx.post(f"{served}/rank", json={"query": "how long do cats sleep", "documents": docs})
    assert rank.status_code == 200, rank.text
    body = rank.json()
    results = body["results"]
    assert sorted(r["index"] for r in results) == [0, 1, 2]
    ranked = [r["relevance_score"] for r in results]
    assert ranked == sorted(ranked, reverse=True)
    # /rank is /score on (query, document) pairs with the query kept whole, then sorted: one scoring path.
    same_pairs = {
        "pairs": [["how long do cats sleep", d] for d in docs],
        "model": body["model"],
        "truncation": "only_second",
    }
    scores = httpx.post(f"{served}/score", json=same_pairs).json()["scores"]
    assert {r["index"]: r["relevance_score"] for r in results} == pytest.approx(dict(enumerate(scores)), abs=1e-6)
