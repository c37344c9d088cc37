"""Every error path returns the one JSON error shape, and no input makes a 500 or hangs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import pytest_asyncio

from app.settings import Settings
from tests.api.conftest import assert_error, running

pytestmark = pytest.mark.asyncio(loop_scope="module")

PAIR = [["a", "b"]]
JSON = {"content-type": "application/json"}

# (path, raw body, status, param or None)
WEIRD_BODIES = [
    ("/score", b"{", 422, None),
    ("/score", b'{"pairs": [["a", "b"]]', 422, None),
    ("/score", b"", 422, None),
    ("/score", b"null", 422, None),
    ("/score", b"[]", 422, None),
    ("/score", b'"pairs"', 422, None),
    ("/score", b"12345678901234567890123456789", 422, None),
    ("/score", b"{}", 422, "pairs"),
    ("/score", b'{"pairs": null}', 422, "pairs"),
    ("/score", b'{"pairs": "a,b"}', 422, "pairs"),
    ("/score", b'{"pairs": [null]}', 422, "pairs.0"),
    ("/score", b'{"pairs": [["a"]]}', 422, "pairs.0.1"),
    ("/score", b'{"pairs": [["a", "b", "c"]]}', 422, "pairs.0"),
    ("/score", b'{"pairs": [["a", 1]]}', 422, "pairs.0.1"),
    ("/score", b'{"pairs": [["a", null]]}', 422, "pairs.0.1"),
    ("/score", b'{"pairs": [{"a": "x"}]}', 422, "pairs.0"),
    ("/score", b'{"pairs": [{"a": "x", "b": "y", "c": "z"}]}', 422, "pairs.0"),
    ("/score", b'{"pairs": [["\\ud800", "b"]]}', 422, "pairs.0.0"),
    ("/score", b'{"pairs": [["a", "b"]], "raw_scores": "maybe"}', 422, "raw_scores"),
    ("/score", b'{"pairs": [["a", "b"]], "truncation": "left"}', 422, "truncation"),
    ("/score", b'{"pairs": [["a", "b"]], "timeout_ms": -1}', 422, "timeout_ms"),
    ("/score", b'{"pairs": [["a", "b"]], "timeout_ms": 1e400}', 422, "timeout_ms"),
    ("/score", b'{"pairs": [["a", "b"]], "timeout_ms": 1e30}', 422, "timeout_ms"),
    ("/score", b'{"pairs": [["a", "b"]], "timeout_ms": 99999999999999999999999}', 422, "timeout_ms"),
    ("/score", b'{"pairs": [["a", "b"]], "timeout_ms": 86400000}', 422, "timeout_ms"),  # > max_timeout_ms
    ("/score", b'{"pairs": [["a", "b"]], "timeout_ms": NaN}', 422, "timeout_ms"),
    ("/score", b'{"pairs": [["a", "b"]], "model": 5}', 422, "model"),
    ("/score", b'{"pairs": [["a", "b"]], "top_k": 5}', 422, "top_k"),
    ("/score", b'{"pairs": [["a", "b"]], "timeout_ms": 1' + b"0" * 5000 + b"}", 400, None),
    ("/score", b"[" * 100_000 + b"]" * 100_000, 400, None),
    ("/rank", b'{"query": null, "documents": ["a"]}', 422, "query"),
    ("/rank", b'{"query": "q"}', 422, "documents"),
    ("/rank", b'{"query": "q", "documents": [null]}', 422, "documents.0"),
    ("/rank", b'{"query": "q", "documents": [5]}', 422, "documents.0"),
    ("/rank", b'{"query": "q", "documents": [{"id": 1}]}', 422, "documents.0.text"),
    ("/rank", b'{"query": "q", "documents": [{"text": 5}]}', 422, "documents.0.text"),
    ("/rank", b'{"query": "q", "documents": ["a"], "top_n": -1}', 422, "top_n"),
    ("/rank", b'{"query": "q", "documents": ["a"], "top_n": 1.5}', 422, "top_n"),
    ("/rank", b'{"query": "q", "documents": ["a"], "top_n": "all"}', 422, "top_n"),
    ("/rank", b'{"query": "q", "documents": ["a"], "return_documents": []}', 422, "return_documents"),
]


@pytest.mark.parametrize(("path", "body", "status", "param"), WEIRD_BODIES)
async def test_weird_bodies(client: httpx.AsyncClient, path: str, body: bytes, status: int, param: str | None) -> None:
    error = assert_error(await client.post(path, content=body, headers=JSON), status)
    assert error.get("param") == param, error


async def test_odd_but_valid_inputs_score(client: httpx.AsyncClient) -> None:
    # NaN in an extra field is echoed as null; empty strings, control characters and emoji are text.
    documents = b'[{"text": "", "x": NaN}, "\\u0000\\t\\n", "\xf0\x9f\x9a\x80"]'
    body = b'{"query": "", "documents": ' + documents + b', "return_documents": true}'
    r = await client.post("/rank", content=body, headers=JSON)
    assert r.status_code == 200, r.text
    assert {x["index"]: x for x in r.json()["results"]}[0]["document"] == {"text": "", "x": None}
    # An id beyond 64 bits and a lone surrogate in an extra field come back as sent (orjson writes neither).
    document = b'{"text": "a", "id": 100000000000000000000000, "x": "\\udfff"}'
    body = b'{"query": "q", "documents": [' + document + b'], "return_documents": true}'
    r = await client.post("/rank", content=body, headers=JSON)
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["document"] == {"text": "a", "id": 10**23, "x": "\udfff"}


async def test_content_types(client: httpx.AsyncClient) -> None:
    body = json.dumps({"pairs": PAIR}).encode()
    assert_error(await client.post("/score", content=body, headers={"content-type": "text/plain"}), 422)
    assert_error(await client.post("/score", content=body), 422)
    ok = await client.post("/score", content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


async def test_empty_body_says_it_is_empty(client: httpx.AsyncClient) -> None:
    for path in ("/score", "/rank"):
        error = assert_error(await client.post(path, content=b"", headers=JSON), 422)
        assert error["message"].startswith("the body is empty"), error


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/nope"), 404, "not_found")
    assert_error(await client.get("/score"), 405, "method_not_allowed")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def small_limits(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(max_request_bytes=2000, max_pairs_per_request=4, warmup=False)
    async with running(settings) as (_, client):
        yield client


async def test_too_many_pairs_or_documents_is_413(small_limits: httpx.AsyncClient) -> None:
    error = assert_error(await small_limits.post("/score", json={"pairs": PAIR * 5}), 413, "payload_too_large")
    assert error["param"] == "pairs" and "4" in error["message"]
    error = assert_error(await small_limits.post("/rank", json={"query": "q", "documents": ["d"] * 5}), 413)
    assert error["param"] == "documents"
    assert (await small_limits.post("/score", json={"pairs": PAIR * 4})).status_code == 200


async def test_large_body_is_413_before_parsing(small_limits: httpx.AsyncClient) -> None:
    big = b'{"pairs": [["' + b"x" * 3000 + b'", "y"]]}'
    assert_error(await small_limits.post("/score", content=big, headers=JSON), 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(10):
            yield b"x" * 500

    assert_error(await small_limits.post("/score", content=chunks(), headers=JSON), 413, "payload_too_large")
