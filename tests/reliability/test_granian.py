"""`hashrank serve --server granian`: the optional Rust HTTP server runs the same app, so every answer equals
the default uvicorn server's, errors included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.servers import Server
from tests.reliability.conftest import hashrank

pytest.importorskip("granian")

REQUESTS = [
    ("/score", {"pairs": [["A man is playing a guitar.", "A person plays an instrument."], ["a", "b"]]}),
    ("/rank", {"query": "how long do cats sleep", "documents": ["Cats sleep 16 hours.", "Dogs bark."], "top_n": 1}),
    ("/v1/rerank", {"query": "cats", "documents": ["Cats sleep.", "Stocks fell."], "model": "rerank-hash-nano"}),
    ("/rerank", {"query": "cats", "texts": ["Cats sleep.", "Stocks fell."]}),
    ("/score", {"pairs": [["only one text"]]}),  # 422 in our error shape
    ("/v2/rerank", {"query": "cats", "documents": []}),  # the Cohere dialect's own 4xx
]


@pytest.fixture(scope="module")
def granian(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with hashrank(tmp_path_factory.mktemp("granian"), "--server", "granian", name="granian") as s:
        yield s


@pytest.mark.parametrize(("path", "body"), REQUESTS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(REQUESTS)])
def test_same_answers_as_uvicorn(server: Server, granian: Server, path: str, body: dict) -> None:
    want = httpx.post(server.url + path, json=body, timeout=30)
    got = httpx.post(granian.url + path, json=body, timeout=30)
    assert got.status_code == want.status_code
    assert got.headers["content-type"] == want.headers["content-type"]
    strip = ("id",)  # Cohere v1 answers carry a fresh id per response
    assert _without(got.json(), strip) == _without(want.json(), strip)


def test_ready_and_metrics(granian: Server) -> None:
    assert httpx.get(granian.url + "/health/ready").status_code == 200
    metrics = httpx.get(granian.url + "/metrics")
    assert metrics.status_code == 200 and "hashrank_requests_total" in metrics.text


def test_missing_granian_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from app.__main__ import main

    real_import = builtins.__import__

    def no_granian(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.startswith("granian"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_granian)
    assert main(["serve", "--server", "granian", "--port", "0"]) == 2


def _without(value: object, keys: tuple[str, ...]) -> object:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value
