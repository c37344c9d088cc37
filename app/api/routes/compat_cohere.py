"""Cohere and Jina dialects: POST /v1/rerank (Cohere v1 and Jina, one superset response) and POST
/v2/rerank (Cohere v2), so the Cohere SDKs (base_url), LangChain's CohereRerank, LlamaIndex's Cohere and
Jina rerankers and OpenSearch's Cohere connector work unchanged.

Thin adapters over Reranker.rank: long documents are split into windows and aggregated (max by
default, as Cohere does), capped by max_chunks_per_doc. Errors are Cohere's `{"message": ...}`; the
`Authorization: Bearer` header the SDKs always send is accepted and not checked.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from app.api.deps import RerankerDep, label_model, timeout_left
from app.api.disconnect import cancel_on_disconnect
from app.api.errors import ApiError, register_error_renderer
from app.api.responses import JSONBody
from app.api.routes import ERROR_TEXT, error_responses
from app.chunking import DEFAULT_MAX_CHUNKS
from app.errors import InvalidInput
from app.reranker import Reranker, Scores
from app.schemas_compat import (
    DEFAULT_MAX_TOKENS_PER_DOC,
    CohereDocument,
    CohereError,
    CohereJinaError,
    CohereV1Request,
    CohereV2Request,
)

router = APIRouter(tags=["compat: Cohere, Jina"])
# Cohere answers every invalid request with 400, never 422.
_COHERE_STATUSES = {**{s: t for s, t in ERROR_TEXT.items() if s != 422}, 400: "Invalid or unparseable body"}
# Cohere bills one search unit per query of up to 100 documents, each chunk counting as a document.
DOCS_PER_SEARCH_UNIT = 100


def _status(error: ApiError) -> int:
    return 400 if error.status == 422 else error.status  # Cohere answers invalid requests with 400


def render_cohere_error(error: ApiError) -> Response:
    """Cohere's error body {"message": ...}."""
    return JSONBody({"message": error.message}, status_code=_status(error), headers=error.headers)


def render_cohere_jina_error(error: ApiError) -> Response:
    """/v1/rerank serves Jina clients too, which read Jina's {"detail": ...}: both keys, one message."""
    body = {"message": error.message, "detail": error.message}
    return JSONBody(body, status_code=_status(error), headers=error.headers)


def install(app: FastAPI) -> None:
    app.include_router(router)
    register_error_renderer(app, "/v1/rerank", render_cohere_jina_error)
    register_error_renderer(app, "/v2/rerank", render_cohere_error)


def _check_documents(n: int) -> None:
    if n == 0:
        raise InvalidInput("invalid request: list of documents must not be empty", param="documents")


def _results(scores: Scores, documents: list[CohereDocument], return_documents: bool) -> list[dict[str, Any]]:
    results = []
    for r in scores.results:
        item: dict[str, Any] = {"index": r.index, "relevance_score": r.score}
        fields = documents[r.index].fields()
        if "id" in fields:
            item["id"] = fields["id"]
        if return_documents:
            item["document"] = fields  # every field as sent; a string document is {"text": ...}
        results.append(item)
    return results


def _meta(version: str, scores: Scores) -> dict[str, Any]:
    chunks = scores.usage.chunks or scores.usage.pairs
    api_version: dict[str, Any] = {"version": version}
    if version == "2":
        api_version["is_experimental"] = False
    return {
        "api_version": api_version,
        "billed_units": {"search_units": max(1, math.ceil(chunks / DOCS_PER_SEARCH_UNIT))},
    }


async def _rank_chunked(
    request: Request, reranker: Reranker, body: CohereV1Request | CohereV2Request, texts: list[str], model: str
) -> Scores:
    """Both Cohere versions rank through the core with chunking on, as Cohere does."""
    return await cancel_on_disconnect(
        request,
        reranker.rank(
            body.query,
            texts,
            model=model,
            top_n=body.top_n,
            max_chunks=body.max_chunks_per_doc or DEFAULT_MAX_CHUNKS,
            aggregation=body.chunk_aggregation,
            timeout_ms=timeout_left(request, body.timeout_ms),
        ),
    )


@router.post("/v1/rerank", responses=error_responses(CohereJinaError, _COHERE_STATUSES))
async def rerank_v1(body: CohereV1Request, request: Request, reranker: RerankerDep) -> Response:
    """Cohere v1 and Jina rerank: results best first with index and relevance_score in [0, 1], the
    document unless return_documents is false, plus Jina's model and usage.total_tokens."""
    _check_documents(len(body.documents))
    texts = body.texts()
    served = reranker.resolve(body.model, "rank")
    label_model(request, served.name)
    scores = await _rank_chunked(request, reranker, body, texts, served.name)
    return_documents = body.return_documents is not False
    return JSONBody(
        {
            "id": _request_id(request),
            "results": _results(scores, body.documents, return_documents),
            "meta": _meta("1", scores),
            "model": scores.model,
            "usage": {"total_tokens": scores.usage.tokens, "chunks": scores.usage.chunks},
        }
    )


@router.post("/v2/rerank", responses=error_responses(CohereError, _COHERE_STATUSES))
async def rerank_v2(body: CohereV2Request, request: Request, reranker: RerankerDep) -> Response:
    """Cohere v2 rerank: documents cut to max_tokens_per_doc, then chunked like v1."""
    _check_documents(len(body.documents))
    served = reranker.resolve(body.model, "rank")
    label_model(request, served.name)
    max_tokens = body.max_tokens_per_doc or DEFAULT_MAX_TOKENS_PER_DOC
    texts = await asyncio.to_thread(served.chunker.truncate_documents, body.texts(), max_tokens)
    scores = await _rank_chunked(request, reranker, body, texts, served.name)
    return JSONBody(
        {
            "id": _request_id(request),
            "results": _results(scores, body.documents, bool(body.return_documents)),
            "meta": _meta("2", scores),
        }
    )


def _request_id(request: Request) -> str:
    """The request's X-Request-ID (the caller's, or the one RequestId made), so logs on both sides join."""
    return str(getattr(request.state, "request_id", "")) or str(uuid.uuid4())
