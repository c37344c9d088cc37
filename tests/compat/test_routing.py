"""Several models in one process, with the two shipped model directories: every dialect routes by
`model`, each route family has its default, unknown names are refused with the list, metrics are
labelled by model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.api.conftest import metric, running
from tests.compat.conftest import DOCS, QUERY, RERANK, STS, scores_of

pytestmark = pytest.mark.asyncio(loop_scope="module")
PAIRS = [(QUERY, d) for d in DOCS]


def in_input_order(results: list[dict[str, Any]], key: str) -> list[float]:
    out = [0.0] * len(results)
    for r in results:
        out[r["index"]] = r[key]
    return out


async def test_models_are_listed_and_differ(client: httpx.AsyncClient) -> None:
    models = (await client.get("/models")).json()["models"]
    assert [m["name"] for m in models] == [STS, RERANK]
    assert all(m["ready"] for m in models)
    sts, rerank = await scores_of(client, PAIRS, STS), await scores_of(client, PAIRS, RERANK)
    assert sts != pytest.approx(rerank, abs=1e-6)  # so the checks below can tell the models apart


async def test_defaults_per_route_family(client: httpx.AsyncClient) -> None:
    sts, rerank = await scores_of(client, PAIRS, STS), await scores_of(client, PAIRS, RERANK)
    score = (await client.post("/score", json={"pairs": [list(p) for p in PAIRS]})).json()
    assert score["model"] == STS and score["scores"] == pytest.approx(sts, abs=1e-6)
    predict = (await client.post("/predict", json={"inputs": [list(p) for p in PAIRS]})).json()
    assert [p[0]["score"] for p in predict] == pytest.approx(sts, abs=1e-6)
    rank = (await client.post("/rank", json={"query": QUERY, "documents": DOCS})).json()
    assert rank["model"] == RERANK
    tei = (await client.post("/rerank", json={"query": QUERY, "texts": DOCS})).json()
    assert in_input_order(tei, "score") == pytest.approx(rerank, abs=1e-6)
    for path in ("/v1/rerank", "/v2/rerank"):
        body = (await client.post(path, json={"query": QUERY, "documents": DOCS})).json()
        assert in_input_order(body["results"], "relevance_score") == pytest.approx(rerank, abs=1e-6), path


async def test_model_field_routes_every_dialect(client: httpx.AsyncClient) -> None:
    sts = await scores_of(client, PAIRS, STS)
    before = (await client.get("/metrics")).text
    tei = (await client.post("/rerank", json={"query": QUERY, "texts": DOCS, "model": STS})).json()
    assert in_input_order(tei, "score") == pytest.approx(sts, abs=1e-6)
    v1 = (await client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS, "model": STS})).json()
    assert v1["model"] == STS
    assert in_input_order(v1["results"], "relevance_score") == pytest.approx(sts, abs=1e-6)
    v2 = (await client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS, "model": STS})).json()
    assert in_input_order(v2["results"], "relevance_score") == pytest.approx(sts, abs=1e-6)
    after = (await client.get("/metrics")).text
    scored = metric(after, "hashrank_pairs_scored_total", model=STS) - metric(
        before, "hashrank_pairs_scored_total", model=STS
    )
    assert scored == 3 * len(DOCS)
    for route in ("/rerank", "/v1/rerank", "/v2/rerank"):
        assert metric(after, "hashrank_requests_total", route=route, status="200", model=STS) >= 1


async def test_unknown_model_lists_the_served_ones(client: httpx.AsyncClient) -> None:
    cases: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], str]]] = {
        "/rerank": ({"query": QUERY, "texts": DOCS}, lambda b: b["error"]),
        "/predict": ({"inputs": [QUERY, DOCS[0]]}, lambda b: b["error"]),
        "/v1/rerank": ({"query": QUERY, "documents": DOCS}, lambda b: b["message"]),
        "/v2/rerank": ({"query": QUERY, "documents": DOCS}, lambda b: b["message"]),
        "/rank": ({"query": QUERY, "documents": DOCS}, lambda b: b["error"]["message"]),
    }
    for path, (payload, message) in cases.items():
        r = await client.post(path, json={**payload, "model": "jina-reranker-v2-base-multilingual"})
        assert r.status_code == 404, (path, r.text)
        assert STS in message(r.json()) and RERANK in message(r.json()), path


async def test_models_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    sts_model_dir: Path,
    rerank_model_dir: Path,
) -> None:
    monkeypatch.setenv("HASHRANK_MODELS", f"similar={sts_model_dir},rerank-small={rerank_model_dir}")
    settings = Settings(threads=1, warmup=False)
    assert settings.models == {"similar": sts_model_dir, "rerank-small": rerank_model_dir}
    async with running(settings) as (_, c):
        assert [m["name"] for m in (await c.get("/models")).json()["models"]] == ["similar", "rerank-small"]
        body = (await c.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})).json()
        assert body["model"] == "rerank-small"
        expected = await scores_of(c, PAIRS, "rerank-small")
        assert in_input_order(body["results"], "relevance_score") == pytest.approx(expected, abs=1e-6)
        assert (await c.post("/score", json={"pairs": [["a", "b"]]})).json()["model"] == "similar"
