"""app.api.fast_path: valid bodies of the scoring routes (ours and the dialects') are answered without
FastAPI's routing, exactly as the routes answer them; everything else reaches FastAPI with its body intact."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from app.settings import Settings
from tests.api.conftest import running

pytestmark = pytest.mark.asyncio(loop_scope="module")

# FastAPI reads application/*+json bodies too; the fast path takes application/json only, so this content
# type drives the very same request through the FastAPI route.
ROUTE_ONLY = {"content-type": "application/vnd.hashrank+json", "x-request-id": "same-id"}
JSON = {"content-type": "application/json", "x-request-id": "same-id"}  # Cohere's body echoes the id
BODIES: list[tuple[str, dict[str, Any]]] = [
    ("/score", {"pairs": [["A man is eating.", "Someone eats food."], {"a": "x", "b": "y"}]}),
    ("/score", {"pairs": [["a", "b"]], "raw_scores": True, "truncation": "only_second", "timeout_ms": 5000}),
    (
        "/rank",
        {
            "query": "capital of France",
            "documents": ["Paris", {"text": "Bananas", "id": 7, "tag": "x"}],
            "top_n": 1,
            "return_documents": True,
        },
    ),
    ("/rank", {"query": "q", "documents": ["d " * 400], "max_chunks_per_doc": 3, "chunk_aggregation": "mean"}),
    ("/rerank", {"query": "cats", "texts": ["Cats sleep a lot.", "Stocks fell."], "return_text": True}),
    ("/predict", {"inputs": [["a man eats", "someone is eating"], ["x", "y"]]}),
    ("/v1/rerank", {"query": "cats", "documents": ["Cats sleep.", {"text": "Stocks fell.", "id": "d2"}], "top_n": 1}),
    ("/v2/rerank", {"model": "sts-hash-nano", "query": "cats", "documents": ["Cats sleep.", "Stocks fell."]}),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running(make_settings()) as app_client:
        yield app_client


async def both(client: httpx.AsyncClient, path: str, **request: Any) -> tuple[httpx.Response, httpx.Response]:
    """The same request through the fast path and through the FastAPI route."""
    return await client.post(path, headers=JSON, **request), await client.post(path, headers=ROUTE_ONLY, **request)


@pytest.mark.parametrize(("path", "body"), BODIES)
async def test_a_valid_body_gets_the_routes_answer(
    served: tuple[FastAPI, httpx.AsyncClient], path: str, body: dict[str, Any]
) -> None:
    _, client = served
    fast, routed = await both(client, path, json=body)
    assert fast.status_code == routed.status_code == 200
    assert fast.json() == routed.json() and fast.headers["content-type"] == routed.headers["content-type"]


async def test_the_fast_path_answers_without_the_router(served: tuple[FastAPI, httpx.AsyncClient]) -> None:
    """FastAPI's router marks the scope with the endpoint it chose; the fast path's requests carry none."""
    app, client = served
    seen: list[bool] = []
    inner = app.middleware_stack

    async def spy(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await inner(scope, receive, send)
        seen.append("endpoint" in scope)

    app.middleware_stack = spy  # type: ignore[assignment]
    try:
        await client.post("/score", json={"pairs": [["a", "b"]]}, headers=JSON)
        await client.post("/score", json={"pairs": [["a", "b"]]}, headers=ROUTE_ONLY)
        await client.post("/score", json={"pairs": [["a"]]}, headers=JSON)  # invalid: FastAPI answers it
    finally:
        app.middleware_stack = inner
    assert seen == [False, True, True]


@pytest.mark.parametrize(
    ("path", "content", "status"),
    [
        ("/score", b'{"pairs": [["a"]]}', 422),  # invalid: FastAPI's 422, with the body replayed to it
        ("/score", b'{"pairs": [["a", "b"]], "extra": 1}', 422),
        ("/score", b'{"pairs": [["a", NaN]]}', 422),  # json.loads reads NaN; orjson does not: FastAPI decides
        ("/rank", b'{"query": "q", "documents": ["d"], "model": "nope"}', 404),  # raised while scoring
        ("/rank", b"", 422),
        ("/rerank", b'{"query": "q", "texts": []}', 400),  # TEI's own error body and status
        ("/v2/rerank", b'{"query": "q", "documents": []}', 400),  # Cohere's
    ],
)
async def test_errors_keep_their_status_and_body(
    served: tuple[FastAPI, httpx.AsyncClient], path: str, content: bytes, status: int
) -> None:
    _, client = served
    fast, routed = await both(client, path, content=content)
    assert fast.status_code == routed.status_code == status
    assert fast.json() == routed.json() and fast.headers.get("retry-after") == routed.headers.get("retry-after")


def test_every_fast_path_is_a_post_route_with_the_same_body_model(make_settings: Callable[..., Settings]) -> None:
    """fast_path.ROUTES repeats the routers' paths and body models: this keeps the two from drifting apart (a
    renamed route or a changed model would otherwise be served by the fast path alone, or not at all)."""
    from app.api.fast_path import ROUTES
    from app.main import create_app

    paths = create_app(make_settings()).openapi()["paths"]
    for path, (model, _) in ROUTES.items():
        body = paths.get(path, {}).get("post", {}).get("requestBody", {})
        schema = body.get("content", {}).get("application/json", {}).get("schema", {})
        assert schema.get("$ref") == f"#/components/schemas/{model.__name__}", (path, schema)
