"""POST /rank: a query's documents, best first."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.deps import RerankerDep, label_model, timeout_left
from app.api.disconnect import cancel_on_disconnect
from app.api.responses import JSONBody
from app.api.routes import ERROR_RESPONSES
from app.reranker import Reranker
from app.schemas import RankRequest, RankResponse, rank_response

router = APIRouter(tags=["scoring"])


@router.post("/rank", response_model=RankResponse, response_model_exclude_none=True, responses=ERROR_RESPONSES)
async def rank(body: RankRequest, request: Request, reranker: RerankerDep) -> Response:
    """Documents sorted by relevance to the query (ties by index), cut to top_n; ids and fields kept."""
    return await rank_and_respond(body, request, reranker)


async def rank_and_respond(body: RankRequest, request: Request, reranker: Reranker) -> Response:
    """The route's work, shared with app.api.fast_path (which reaches it without FastAPI)."""
    model = reranker.resolve(body.model, "rank").name
    label_model(request, model)
    result = await cancel_on_disconnect(
        request,
        reranker.rank(
            body.query,
            [doc.text for doc in body.documents],
            model=model,
            top_n=body.top_n,
            raw=body.raw_scores,
            truncate=body.truncate,
            truncation=body.truncation,
            max_chunks=body.max_chunks_per_doc,
            aggregation=body.chunk_aggregation,
            timeout_ms=timeout_left(request, body.timeout_ms),
        ),
    )
    return JSONBody(rank_response(result, body))
