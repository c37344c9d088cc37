"""POST /rank on the shipped model: score + sort + top_n over the same path as /score."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import STS, assert_error

pytestmark = pytest.mark.asyncio(loop_scope="module")

QUERY = "What is the capital of France?"
DOCS = [
    "Bananas are rich in potassium.",
    "Paris is the capital and largest city of France.",
    "The Eiffel Tower is in Paris.",
    "Bananas are rich in potassium.",  # a duplicate of 0
    "東京は日本の首都です。🚀",
]


async def test_rank_is_score_sorted(client: httpx.AsyncClient) -> None:
    r = await client.post("/rank", json={"query": QUERY, "documents": DOCS})
    assert r.status_code == 200, r.text
    body = r.json()
    scores = await client.post("/score", json={"pairs": [[QUERY, d] for d in DOCS], "truncation": "only_second"})
    by_index = scores.json()["scores"]
    assert body["model"] == STS
    assert [x["index"] for x in body["results"]] == sorted(range(len(DOCS)), key=lambda i: (-by_index[i], i))
    assert all(x["relevance_score"] == by_index[x["index"]] for x in body["results"])
    assert set(body["results"][0]) == {"index", "relevance_score"}
    assert body["usage"]["pairs"] == len(DOCS)
    # Duplicates tie and come back by index.
    positions = [x["index"] for x in body["results"]]
    assert positions.index(0) < positions.index(3)


async def test_top_n(client: httpx.AsyncClient) -> None:
    full = (await client.post("/rank", json={"query": QUERY, "documents": DOCS})).json()["results"]
    one = (await client.post("/rank", json={"query": QUERY, "documents": DOCS, "top_n": 1})).json()["results"]
    assert one == full[:1]
    many = (await client.post("/rank", json={"query": QUERY, "documents": DOCS, "top_n": 10**6})).json()["results"]
    assert many == full
    assert_error(await client.post("/rank", json={"query": QUERY, "documents": DOCS, "top_n": 0}), 422)


async def test_one_and_zero_documents(client: httpx.AsyncClient) -> None:
    one = (await client.post("/rank", json={"query": QUERY, "documents": ["only"]})).json()
    assert [x["index"] for x in one["results"]] == [0]
    none = await client.post("/rank", json={"query": QUERY, "documents": []})
    assert none.status_code == 200 and none.json()["results"] == []


async def test_ids_and_extra_fields_are_kept(client: httpx.AsyncClient) -> None:
    docs = [
        {"text": DOCS[1], "id": "doc-paris", "meta": {"lang": "en", "n": [1, 2]}},
        DOCS[0],
        {"text": DOCS[2], "id": 42},
        {"text": DOCS[4], "id": None, "source": "wiki"},
    ]
    r = await client.post("/rank", json={"query": QUERY, "documents": docs, "return_documents": True})
    assert r.status_code == 200, r.text
    by_index = {x["index"]: x for x in r.json()["results"]}
    assert by_index[0]["id"] == "doc-paris" and by_index[0]["document"] == docs[0]
    assert "id" not in by_index[1] and by_index[1]["document"] == {"text": DOCS[0]}
    assert by_index[2]["id"] == 42
    assert by_index[3]["id"] is None and by_index[3]["document"] == docs[3]
    without = await client.post("/rank", json={"query": QUERY, "documents": docs})
    assert all("document" not in x for x in without.json()["results"])


async def test_the_query_is_never_cut(client: httpx.AsyncClient) -> None:
    long_doc = "Paris " * 3000
    r = await client.post("/rank", json={"query": QUERY, "documents": [long_doc, "short"]})
    assert r.status_code == 200 and r.json()["usage"]["truncated"] == 1
    error = assert_error(await client.post("/rank", json={"query": long_doc, "documents": ["x"]}), 422)
    assert error["param"] == "truncation"
    cut_both = {"query": long_doc, "documents": ["x"], "truncation": "longest_first"}
    assert (await client.post("/rank", json=cut_both)).status_code == 200


async def test_raw_scores_and_unknown_model(client: httpx.AsyncClient) -> None:
    raw = (await client.post("/rank", json={"query": QUERY, "documents": DOCS, "raw_scores": True})).json()
    scores = [x["relevance_score"] for x in raw["results"]]
    assert scores == sorted(scores, reverse=True)
    assert_error(await client.post("/rank", json={"query": QUERY, "documents": DOCS, "model": "x"}), 404)
