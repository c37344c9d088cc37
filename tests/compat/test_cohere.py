"""Cohere v1/v2 and Jina dialects: the exact bodies the Cohere SDKs, LangChain, Jina clients and
OpenSearch's Cohere connector send, and every field those clients read (serving-peers.md §2.3-2.7)."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.settings import Settings
from tests.api.conftest import metric, running
from tests.compat.conftest import DOCS, QUERY, RERANK, STS, ranked, scores_of

pytestmark = pytest.mark.asyncio(loop_scope="module")
ROOT = Path(__file__).resolve().parents[2]
BEARER = {"Authorization": "Bearer any-key"}
UUID = re.compile(r"^[0-9a-f-]{36}$")

# cohere.Client(base_url=...).rerank(...) (SDK 5.x): None fields are dropped before sending.
COHERE_V1 = {"model": RERANK, "query": QUERY, "documents": DOCS, "top_n": 2, "return_documents": True}
COHERE_V1_OBJECTS: dict[str, Any] = {
    "model": RERANK,
    "query": QUERY,
    "documents": [{"title": "Night vision", "text": DOCS[3], "id": "doc-3", "year": 2024}, {"text": DOCS[1]}],
    "rank_fields": ["title", "text"],
    "return_documents": True,
    "max_chunks_per_doc": 10,
}
# cohere.ClientV2(base_url=...).rerank(...), which LangChain's CohereRerank calls with max_tokens_per_doc.
COHERE_V2 = {"model": RERANK, "query": QUERY, "documents": DOCS, "top_n": 3, "max_tokens_per_doc": 4096}
# LangChain's CohereRerank passes its own None through the SDK as null.
COHERE_V2_LANGCHAIN = {"query": QUERY, "documents": DOCS, "model": RERANK, "top_n": 3, "max_tokens_per_doc": None}
COHERE_V2_OLD_SDK = {"model": RERANK, "query": QUERY, "documents": DOCS, "return_documents": True}
COHERE_V2_PRIORITY = {**COHERE_V2, "priority": 0}
# Jina's rerank API body (LlamaIndex JinaRerank, Jina's own examples).
JINA = {"model": RERANK, "query": QUERY, "documents": DOCS, "top_n": 3, "return_documents": True}
JINA_OBJECTS = {"model": RERANK, "query": QUERY, "documents": [{"text": d} for d in DOCS]}


def error_message(path: str, body: dict[str, Any]) -> str:
    """Cohere's {"message"}; on /v1/rerank also Jina's {"detail"} with the same text."""
    if path == "/v1/rerank":
        assert set(body) == {"message", "detail"} and body["detail"] == body["message"], body
    else:
        assert set(body) == {"message"}, body
    message: str = body["message"]
    return message


def in_input_order(results: list[dict[str, Any]]) -> list[float]:
    return [r["relevance_score"] for r in sorted(results, key=lambda r: r["index"])]


def assert_v1_meta(body: dict[str, Any]) -> None:
    assert UUID.match(body["id"]), body["id"]
    assert body["meta"]["api_version"] == {"version": "1"}
    assert body["meta"]["billed_units"]["search_units"] >= 1


async def test_cohere_v1_sdk_body(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/rerank", json=COHERE_V1, headers=BEARER)
    assert r.status_code == 200, r.text
    body = r.json()
    assert_v1_meta(body)
    expected = await scores_of(client, [(QUERY, d) for d in DOCS])
    assert [x["index"] for x in body["results"]] == ranked(expected)[:2]
    for x in body["results"]:
        assert set(x) == {"index", "relevance_score", "document"}
        assert x["relevance_score"] == pytest.approx(expected[x["index"]], abs=1e-6)
        assert 0.0 <= x["relevance_score"] <= 1.0
        assert x["document"] == {"text": DOCS[x["index"]]}


async def test_cohere_v1_return_documents_false_and_default_top_n(client: httpx.AsyncClient) -> None:
    body = (await client.post("/v1/rerank", json={**COHERE_V1, "top_n": None, "return_documents": False})).json()
    assert len(body["results"]) == len(DOCS)
    assert all(set(x) == {"index", "relevance_score"} for x in body["results"])


async def test_cohere_v1_objects_rank_fields_ids_and_metadata_untouched(client: httpx.AsyncClient) -> None:
    body = (await client.post("/v1/rerank", json=COHERE_V1_OBJECTS, headers=BEARER)).json()
    by_index = {x["index"]: x for x in body["results"]}
    assert by_index[0]["document"] == COHERE_V1_OBJECTS["documents"][0]  # every field, as sent
    assert by_index[0]["id"] == "doc-3" and "id" not in by_index[1]
    expected = await scores_of(client, [(QUERY, f"Night vision\n{DOCS[3]}"), (QUERY, DOCS[1])])
    assert by_index[0]["relevance_score"] == pytest.approx(expected[0], abs=1e-6)
    assert by_index[1]["relevance_score"] == pytest.approx(expected[1], abs=1e-6)
    mixed = {**COHERE_V1_OBJECTS, "documents": [DOCS[0], {"title": "Moon", "text": DOCS[1]}], "rank_fields": ["title"]}
    body = (await client.post("/v1/rerank", json=mixed)).json()  # rank_fields apply to objects, not strings
    expected = await scores_of(client, [(QUERY, DOCS[0]), (QUERY, "Moon")])
    assert in_input_order(body["results"]) == pytest.approx(expected, abs=1e-6)
    assert {x["index"]: x["document"] for x in body["results"]}[0] == {"text": DOCS[0]}
    only_title = {**COHERE_V1_OBJECTS, "rank_fields": ["title"]}
    r = await client.post("/v1/rerank", json=only_title)
    assert r.status_code == 400 and "document 1" in error_message("/v1/rerank", r.json())


async def test_jina_bodies_get_model_usage_and_document_text(client: httpx.AsyncClient) -> None:
    for payload in (JINA, JINA_OBJECTS):
        body = (await client.post("/v1/rerank", json=payload, headers=BEARER)).json()
        assert body["model"] == RERANK
        assert isinstance(body["usage"]["total_tokens"], int) and body["usage"]["total_tokens"] > 0
        assert len(body["results"]) == payload.get("top_n", len(DOCS))
        for x in body["results"]:
            assert x["document"]["text"] == DOCS[x["index"]]
            assert isinstance(x["relevance_score"], float)


@pytest.mark.parametrize("payload", [COHERE_V2, COHERE_V2_PRIORITY, COHERE_V2_OLD_SDK, COHERE_V2_LANGCHAIN])
async def test_cohere_v2_bodies(client: httpx.AsyncClient, payload: dict[str, Any]) -> None:
    r = await client.post("/v2/rerank", json=payload, headers=BEARER)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "results", "meta"}
    assert body["meta"]["api_version"] == {"version": "2", "is_experimental": False}
    assert body["meta"]["billed_units"] == {"search_units": 1}
    expected = await scores_of(client, [(QUERY, d) for d in DOCS])
    assert [x["index"] for x in body["results"]] == ranked(expected)[: payload.get("top_n", len(DOCS))]
    for x in body["results"]:
        assert x["relevance_score"] == pytest.approx(expected[x["index"]], abs=1e-6)
        if payload.get("return_documents"):
            assert x["document"] == {"text": DOCS[x["index"]]}
        else:
            assert set(x) == {"index", "relevance_score"}


async def test_cohere_v2_max_tokens_per_doc_cuts_documents(client: httpx.AsyncClient) -> None:
    doc = "cats see well in the dark " * 10
    cut = (await client.post("/v2/rerank", json={**COHERE_V2, "documents": [doc], "max_tokens_per_doc": 3})).json()
    (expected,) = await scores_of(client, [(QUERY, "cats see well")])
    assert cut["results"][0]["relevance_score"] == pytest.approx(expected, abs=1e-6)


async def test_cohere_errors(client: httpx.AsyncClient) -> None:
    for path in ("/v1/rerank", "/v2/rerank"):
        r = await client.post(path, json={"model": RERANK, "query": QUERY, "documents": []})
        assert r.status_code == 400
        assert error_message(path, r.json()) == "invalid request: list of documents must not be empty"
        r = await client.post(path, json={"model": "rerank-v3.5", "query": QUERY, "documents": DOCS})
        assert r.status_code == 404 and RERANK in error_message(path, r.json()) and STS in r.json()["message"]
        r = await client.post(path, json={"model": RERANK, "documents": DOCS})
        assert r.status_code == 400 and "query" in error_message(path, r.json())
        r = await client.post(path, json={"query": QUERY, "documents": DOCS, "top_n": 0})
        assert r.status_code == 400 and "top_n" in error_message(path, r.json())


def _load_setup_search() -> Any:
    spec = importlib.util.spec_from_file_location("setup_search", ROOT / "deploy" / "setup_search.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _opensearch_request(connector: dict[str, Any], query: str, docs: list[str]) -> tuple[str, dict[str, str], str]:
    """What ML Commons sends for our connector: connector.pre_process.cohere.rerank turns the search hits
    into parameters {query, documents (a JSON array), top_n = number of hits}, then ${...} placeholders
    of the request_body template are filled from parameters, connector parameters and credentials."""
    action = connector["actions"][0]
    params = {**connector["parameters"], "query": query, "documents": json.dumps(docs), "top_n": str(len(docs))}
    values = {f"parameters.{k}": v for k, v in params.items()}
    values |= {f"credential.{k}": v for k, v in connector["credential"].items()}

    def fill(text: str) -> str:
        return re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], text)

    return fill(action["url"]), {k: fill(v) for k, v in action["headers"].items()}, fill(action["request_body"])


def _opensearch_post_process(response: dict[str, Any]) -> list[float]:
    """connector.post_process.cohere.rerank: `results` back into input order; every hit must be scored,
    indices must be integers and scores floats (it casts them)."""
    results = response["results"]
    scores: list[float | None] = [None] * len(results)
    for item in results:
        assert isinstance(item["index"], int) and isinstance(item["relevance_score"], float)
        scores[item["index"]] = item["relevance_score"]
    assert all(s is not None for s in scores)
    return [s for s in scores if s is not None]


async def test_opensearch_cohere_connector_we_ship(client: httpx.AsyncClient) -> None:
    connector = _load_setup_search().opensearch_connector("http://hashrank:8080")
    action = connector["actions"][0]
    assert action["pre_process_function"] == "connector.pre_process.cohere.rerank"
    assert action["post_process_function"] == "connector.post_process.cohere.rerank"
    url, headers, body = _opensearch_request(connector, QUERY, DOCS)
    assert url == "http://hashrank:8080/v1/rerank"
    r = await client.post("/v1/rerank", content=body.encode(), headers=headers)
    assert r.status_code == 200, r.text
    scores = _opensearch_post_process(r.json())
    assert scores == pytest.approx(await scores_of(client, [(QUERY, d) for d in DOCS]), abs=1e-6)


# ---- long documents: hand-built windows through the HTTP path ----

NUMBERS = [str(i) for i in range(100, 130)]  # one token each; see tests/test_chunking.py


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def short_client(compat_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    """max_length 16: a one-token query leaves windows of 12 document tokens, overlap 3."""
    async with running(compat_settings(max_length=16)) as (_, c):
        yield c


async def test_chunks_are_scored_and_aggregated(short_client: httpx.AsyncClient) -> None:
    doc = " ".join(NUMBERS)
    windows = [" ".join(NUMBERS[a:b]) for a, b in [(0, 12), (9, 21), (18, 30)]]
    chunk_scores = await scores_of(short_client, [("what", w) for w in windows] + [("what", "short")])
    expected = {
        "max": max(chunk_scores[:3]),
        "mean": sum(chunk_scores[:3]) / 3,
        "first": chunk_scores[0],
    }
    before = (await short_client.get("/metrics")).text
    for how, value in expected.items():
        payload = {"query": "what", "documents": [doc, "short"], "chunk_aggregation": how, "model": RERANK}
        body = (await short_client.post("/v1/rerank", json=payload)).json()
        by_index = {x["index"]: x["relevance_score"] for x in body["results"]}
        assert by_index[0] == pytest.approx(value, abs=1e-6), how
        assert by_index[1] == pytest.approx(chunk_scores[3], abs=1e-6)
        assert body["usage"]["chunks"] == 4
    after = (await short_client.get("/metrics")).text
    for name, per_request in (("hashrank_documents_chunked_total", 1), ("hashrank_document_chunks_total", 3)):
        assert metric(after, name, model=RERANK) - metric(before, name, model=RERANK) == 3 * per_request
    capped = await short_client.post("/v1/rerank", json={"query": "what", "documents": [doc], "max_chunks_per_doc": 2})
    assert capped.json()["results"][0]["relevance_score"] == pytest.approx(max(chunk_scores[:2]), abs=1e-6)


async def test_too_many_chunks_is_refused_with_advice(short_client: httpx.AsyncClient) -> None:
    payload = {"query": "what", "documents": [" ".join(NUMBERS)] * 400, "max_chunks_per_doc": 3}
    r = await short_client.post("/v1/rerank", json=payload)
    assert r.status_code == 413 and "max_chunks_per_doc" in error_message("/v1/rerank", r.json())


async def test_native_rank_and_tei_chunk_the_same_way(short_client: httpx.AsyncClient) -> None:
    doc = " ".join(NUMBERS)
    windows = [" ".join(NUMBERS[a:b]) for a, b in [(0, 12), (9, 21), (18, 30)]]
    best = max(await scores_of(short_client, [("what", w) for w in windows]))
    payload = {"query": "what", "documents": [doc], "model": RERANK, "max_chunks_per_doc": 10}
    rank = (await short_client.post("/rank", json=payload)).json()
    assert rank["results"][0]["relevance_score"] == pytest.approx(best, abs=1e-6)
    assert rank["usage"]["chunks"] == 3 and rank["usage"]["pairs"] == 3
    tei = (await short_client.post("/rerank", json=payload)).json()
    assert tei[0]["score"] == pytest.approx(best, abs=1e-6)
    plain = (await short_client.post("/rank", json={**payload, "max_chunks_per_doc": None})).json()
    assert "chunks" not in plain["usage"] and plain["usage"]["truncated"] == 1
