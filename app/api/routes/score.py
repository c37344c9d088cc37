"""POST /score: similarity of (a, b) pairs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.deps import RerankerDep, label_model, timeout_left
from app.api.disconnect import cancel_on_disconnect
from app.api.responses import JSONBody
from app.api.routes import ERROR_RESPONSES
from app.reranker import Reranker
from app.schemas import ScoreRequest, ScoreResponse, score_response

router = APIRouter(tags=["scoring"])


@router.post("/score", response_model=ScoreResponse, responses=ERROR_RESPONSES)
async def score(body: ScoreRequest, request: Request, reranker: RerankerDep) -> Response:
    """Scores of the pairs, in order: sigmoid in [0, 1], or logits with raw_scores."""
    return await score_and_respond(body, request, reranker)


async def score_and_respond(body: ScoreRequest, request: Request, reranker: Reranker) -> Response:
    """The route's work, shared with app.api.fast_path (which reaches it without FastAPI)."""
    model = reranker.resolve(body.model, "score").name
    label_model(request, model)
    result = await cancel_on_disconnect(
        request,
        reranker.score(
            body.pairs,
            model=model,
            raw=body.raw_scores,
            truncate=body.truncate,
            truncation=body.truncation,
            timeout_ms=timeout_left(request, body.timeout_ms),
        ),
    )
    return JSONBody(score_response(result))
