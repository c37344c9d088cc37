"""TEI dialect: the exact bodies Elasticsearch, LlamaIndex and Haystack send to POST /rerank, and what
each of them reads back (serving-peers.md §2.1, §2.7)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.chunking import Chunker
from tests.compat.conftest import DOCS, QUERY, RERANK, STS, ranked, scores_of

pytestmark = pytest.mark.asyncio(loop_scope="module")

LONG = " ".join(["the tapetum lucidum reflects light back through the retina"] * 80)

# Elasticsearch `hugging_face` service, task `rerank`: 8.x/9.0 send `texts` + `return_text` (from the
# endpoint's task_settings.return_documents) + `top_n`; 9.1+ send `documents` + `return_documents`, and
# max_chunks_per_doc when the endpoint sets it.
ES_OLD = {"texts": DOCS, "query": QUERY, "return_text": True, "top_n": 3}
ES_NEW = {"documents": DOCS, "query": QUERY, "return_documents": True, "top_n": 3}
ES_NEW_NO_OPTIONS = {"documents": DOCS, "query": QUERY}
# LlamaIndex TextEmbeddingInference: {"query", "texts"} only, then asserts len(response) == len(nodes).
LLAMA_INDEX = {"query": QUERY, "texts": DOCS}
# Haystack HuggingFaceTEIRanker: raw_scores always; truncate + capitalized direction when asked.
HAYSTACK = {"query": QUERY, "texts": DOCS, "raw_scores": False}
HAYSTACK_LEFT = {**HAYSTACK, "truncate": True, "truncation_direction": "Left"}
HAYSTACK_RIGHT = {**HAYSTACK, "truncate": True, "truncation_direction": "Right"}


def assert_tei_ranks(body: Any, n: int, *, text: bool) -> list[dict[str, Any]]:
    """A bare array, best first; only the keys Elasticsearch's parser accepts (it throws on others)."""
    assert isinstance(body, list) and len(body) == n, body
    for item in body:
        assert set(item) == ({"index", "score", "text"} if text else {"index", "score"}), item
        assert isinstance(item["index"], int) and isinstance(item["score"], float)
    assert [r["score"] for r in body] == sorted((r["score"] for r in body), reverse=True)
    return body


async def test_elasticsearch_8_body(client: httpx.AsyncClient) -> None:
    r = await client.post("/rerank", json=ES_OLD, headers={"Authorization": "Bearer unused"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = assert_tei_ranks(r.json(), 3, text=True)
    expected = await scores_of(client, [(QUERY, d) for d in DOCS])
    assert [x["index"] for x in body] == ranked(expected)[:3]
    assert all(x["text"] == DOCS[x["index"]] for x in body)
    assert [x["score"] for x in body] == pytest.approx([expected[x["index"]] for x in body], abs=1e-6)
    assert int(r.headers["x-compute-tokens"]) > 0


async def test_elasticsearch_9_body(client: httpx.AsyncClient) -> None:
    body = assert_tei_ranks((await client.post("/rerank", json=ES_NEW)).json(), 3, text=True)
    assert all(x["text"] == DOCS[x["index"]] for x in body)
    assert_tei_ranks((await client.post("/rerank", json=ES_NEW_NO_OPTIONS)).json(), len(DOCS), text=False)


async def test_elasticsearch_max_chunks_per_doc_chunks_instead_of_truncating(client: httpx.AsyncClient) -> None:
    docs = ["cats", LONG]
    cut = (await client.post("/rerank", json={"documents": docs, "query": QUERY})).json()
    chunked = (await client.post("/rerank", json={"documents": docs, "query": QUERY, "max_chunks_per_doc": 5})).json()
    by_index = {x["index"]: x["score"] for x in cut}
    chunked_by_index = {x["index"]: x["score"] for x in chunked}
    assert chunked_by_index[0] == pytest.approx(by_index[0], abs=1e-6)  # short: one window, same score
    assert chunked_by_index[1] >= by_index[1] - 1e-6  # max over windows includes the first window


async def test_llama_index_body_gets_every_text(client: httpx.AsyncClient) -> None:
    body = assert_tei_ranks((await client.post("/rerank", json=LLAMA_INDEX)).json(), len(DOCS), text=False)
    assert sorted(x["index"] for x in body) == list(range(len(DOCS)))


@pytest.mark.parametrize("payload", [HAYSTACK, HAYSTACK_LEFT, HAYSTACK_RIGHT])
async def test_haystack_bodies(client: httpx.AsyncClient, payload: dict[str, Any]) -> None:
    body = assert_tei_ranks((await client.post("/rerank", json=payload)).json(), len(DOCS), text=False)
    assert all(0.0 <= x["score"] <= 1.0 for x in body)


async def test_raw_scores_are_logits(client: httpx.AsyncClient) -> None:
    raw = (await client.post("/rerank", json={**HAYSTACK, "raw_scores": True})).json()
    sig = {x["index"]: x["score"] for x in (await client.post("/rerank", json=HAYSTACK)).json()}
    for x in raw:
        assert 1 / (1 + math.exp(-x["score"])) == pytest.approx(sig[x["index"]], abs=1e-6)


async def test_truncation_direction_left_keeps_the_end(client: httpx.AsyncClient, rerank_model_dir: Path) -> None:
    tail = "cats see in the dark thanks to the tapetum lucidum"
    doc = "unrelated filler about tax law and accounting " * 60 + tail
    body = {"query": QUERY, "texts": [doc]}
    left = (await client.post("/rerank", json={**body, "truncation_direction": "LEFT"})).json()
    right = (await client.post("/rerank", json={**body, "truncation_direction": "right"})).json()
    max_length = {m["name"]: m["max_length"] for m in (await client.get("/models")).json()["models"]}[RERANK]
    (kept,) = Chunker.from_dir(rerank_model_dir, max_length).keep_tails([(QUERY, doc)])
    assert kept.endswith(tail) and len(kept) < len(doc)  # keep_tails itself: tests/test_chunking.py
    (head_score, tail_score) = await scores_of(client, [(QUERY, doc), (QUERY, kept)])
    assert left[0]["score"] == pytest.approx(tail_score, abs=1e-6)
    assert right[0]["score"] == pytest.approx(head_score, abs=1e-6)


async def test_tei_errors(client: httpx.AsyncClient) -> None:
    r = await client.post("/rerank", json={"query": QUERY, "texts": []})
    assert r.status_code == 400 and r.json() == {"error": "`texts` cannot be empty", "error_type": "Empty"}
    r = await client.post("/rerank", json={"query": QUERY, "texts": [LONG], "truncate": False})
    assert r.status_code == 422 and r.json()["error_type"] == "Validation" and "truncate" in r.json()["error"]
    r = await client.post("/rerank", json={"query": QUERY, "texts": ["a"] * 1001})
    assert r.status_code == 422 and r.json()["error_type"] == "Validation" and "1001" in r.json()["error"]
    r = await client.post("/rerank", json={"query": QUERY})
    assert r.status_code == 422 and set(r.json()) == {"error", "error_type"}
    r = await client.post("/rerank", json={"query": QUERY, "texts": ["a"], "truncation_direction": "up"})
    assert r.status_code == 422 and r.json()["error_type"] == "Validation"
    r = await client.post("/rerank", json={"query": QUERY, "texts": ["a"], "model": "nope"})
    assert r.status_code == 404 and RERANK in r.json()["error"] and STS in r.json()["error"]


async def test_predict_pairs(client: httpx.AsyncClient) -> None:
    one = (await client.post("/predict", json={"inputs": [QUERY, DOCS[0]]})).json()
    expected = await scores_of(client, [(QUERY, DOCS[0]), (QUERY, DOCS[1])], model=STS)
    assert one == [{"score": pytest.approx(expected[0], abs=1e-6), "label": "LABEL_0"}]
    batch = (await client.post("/predict", json={"inputs": [[QUERY, DOCS[0]], [QUERY, DOCS[1]]]})).json()
    assert [b[0]["score"] for b in batch] == pytest.approx(expected, abs=1e-6)
    r = await client.post("/predict", json={"inputs": "one text"})
    assert r.status_code == 422 and r.json()["error_type"] == "Validation" and "pairs" in r.json()["error"]
    r = await client.post("/predict", json={"inputs": []})
    assert r.status_code == 400 and r.json()["error_type"] == "Empty"


async def test_info_has_tei_fields(client: httpx.AsyncClient) -> None:
    info = (await client.get("/info")).json()
    models = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
    assert info["model_id"] == RERANK  # the model /rerank serves by default
    assert info["max_client_batch_size"] == info["limits"]["max_pairs_per_request"]
    assert info["max_input_length"] == models[RERANK]["max_length"]
    assert info["model_type"] == {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}
    assert info["auto_truncate"] is True
    for key in ("max_batch_tokens", "max_batch_requests", "max_concurrent_requests", "tokenization_workers"):
        assert isinstance(info[key], int), key
