"""TEI dialect: POST /rerank and POST /predict as text-embeddings-inference serves them, so Elasticsearch's
`hugging_face` service, Haystack's HuggingFaceTEIRanker and LlamaIndex's TEI reranker work unchanged.

Thin adapters over Reranker.rank/score. Shapes (serving-peers.md §2.1): /rerank returns a bare array
`[{index, score, text?}]` best first with every text (or the best top_n when a client sends it);
errors are `{"error", "error_type"}` with TEI's capitalized types. Elasticsearch rejects any other key
in a result, so nothing else is added to them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from app.api.deps import RerankerDep, label_model, timeout_left
from app.api.disconnect import cancel_on_disconnect
from app.api.errors import ApiError, register_error_renderer
from app.api.responses import JSONBody
from app.api.routes import ERROR_TEXT, error_responses
from app.errors import InvalidInput
from app.reranker import Reranker, ServedModel
from app.schemas_compat import TeiError, TeiPredictRequest, TeiRerankRequest
from app.settings import Settings

# TEI has no 413: a too-large batch or body is its "Validation" 422; an empty list is its 400 "Empty".
_TEI_STATUSES = {**ERROR_TEXT, 400: "Empty list, or body not parseable as JSON", 422: ERROR_TEXT[422] + "; too large"}
router = APIRouter(
    tags=["compat: TEI"], responses=error_responses(TeiError, {s: t for s, t in _TEI_STATUSES.items() if s != 413})
)
PREFIXES = ("/rerank", "/predict")
AUTO_TRUNCATE = True


class EmptyInput(InvalidInput):
    """TEI answers an empty list with 400 "Empty", not 422."""

    error_type = "empty"


# Our error types -> (TEI error_type, status). TEI has no 404/413/504: a too-large batch is its
# "Validation" 422 (since v1.9), the rest keep our status with the nearest TEI type.
_TEI_TYPES: dict[int, tuple[str, int]] = {
    400: ("Validation", 400),
    404: ("Validation", 404),
    413: ("Validation", 422),
    422: ("Validation", 422),
    429: ("Overloaded", 429),
    503: ("Unhealthy", 503),
}


def render_tei_error(error: ApiError) -> Response:
    """TEI's error body: {"error": "...", "error_type": "Validation"|"Empty"|"Overloaded"|...}."""
    if error.type == EmptyInput.error_type:
        error_type, status = "Empty", 400
    else:
        error_type, status = _TEI_TYPES.get(error.status, ("Backend", error.status))
    return JSONBody({"error": error.message, "error_type": error_type}, status_code=status, headers=error.headers)


def install(app: FastAPI) -> None:
    app.include_router(router)
    for prefix in PREFIXES:
        register_error_renderer(app, prefix, render_tei_error)


def _truncate(truncate: bool | None) -> bool:
    """TEI's `truncate: null` means the server's --auto-truncate, on by default since TEI 1.9 and always on
    here: only a request's own `false` makes an over-long pair a 422."""
    return AUTO_TRUNCATE if truncate is None else truncate


async def _cut_left(served: ServedModel, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """truncation_direction=left: keep the end of each second text (TEI cuts a pair from its start)."""
    tails = await asyncio.to_thread(served.chunker.keep_tails, pairs)
    return [(a, tail) for (a, _), tail in zip(pairs, tails, strict=True)]


@router.post("/rerank")
async def rerank(body: TeiRerankRequest, request: Request, reranker: RerankerDep) -> Response:
    """TEI rerank: a bare array [{index, score, text?}], best first, every text unless top_n is sent."""
    started = time.perf_counter()
    texts = body.items
    if not texts:
        raise EmptyInput("`texts` cannot be empty", param="texts")
    served = reranker.resolve(body.model, "rank")
    label_model(request, served.name)
    truncate = _truncate(body.truncate)
    scored_texts = texts
    if truncate and body.truncation_direction == "left" and body.max_chunks_per_doc is None:
        scored_texts = [b for _, b in await _cut_left(served, [(body.query, t) for t in texts])]
    result = await cancel_on_disconnect(
        request,
        reranker.rank(
            body.query,
            scored_texts,
            model=served.name,
            top_n=body.top_n,
            raw=body.raw_scores,
            truncate=truncate,
            max_chunks=body.max_chunks_per_doc,
            timeout_ms=timeout_left(request, body.timeout_ms),
        ),
    )
    ranks: list[dict[str, Any]] = []
    for r in result.results:
        item: dict[str, Any] = {"index": r.index, "score": r.score}
        if body.with_text:
            item["text"] = texts[r.index]
        ranks.append(item)
    return JSONBody(ranks, headers=_timing_headers(started, result.usage.tokens, body.query, texts))


@router.post("/predict")
async def predict(body: TeiPredictRequest, request: Request, reranker: RerankerDep) -> Response:
    """TEI predict on pairs: [{score, label}] for one pair, [[{score, label}], ...] for a batch."""
    started = time.perf_counter()
    pairs = body.pairs()
    if not pairs:
        raise EmptyInput("`inputs` cannot be empty", param="inputs")
    served = reranker.resolve(body.model, "score")
    label_model(request, served.name)
    truncate = _truncate(body.truncate)
    if truncate and body.truncation_direction == "left":
        pairs = await _cut_left(served, pairs)
    result = await cancel_on_disconnect(
        request,
        reranker.score(
            pairs,
            model=served.name,
            raw=body.raw_scores,
            truncate=truncate,
            timeout_ms=timeout_left(request, body.timeout_ms),
        ),
    )
    # One-label cross-encoders: TEI names the label LABEL_0 when the config has no id2label.
    predictions = [[{"score": r.score, "label": "LABEL_0"}] for r in result.results]
    texts = [t for pair in pairs for t in pair]
    headers = _timing_headers(started, result.usage.tokens, "", texts)
    return JSONBody(predictions if body.batched else predictions[0], headers=headers)


def _timing_headers(started: float, tokens: int, query: str, texts: list[str]) -> dict[str, str]:
    """TEI's accounting headers (times in ms)."""
    return {
        "x-compute-type": "cpu",
        "x-compute-tokens": str(tokens),
        "x-compute-characters": str(len(query) * len(texts) + sum(len(t) for t in texts)),
        "x-total-time": str(round((time.perf_counter() - started) * 1000)),
    }


def tei_info(reranker: Reranker | None, settings: Settings) -> dict[str, Any]:
    """TEI's GET /info fields for the default rank model (clients read max_client_batch_size from it)."""
    served = reranker.resolve(None, "rank") if reranker is not None else None
    config = served.scorer.config if served is not None else None
    labels = {str(i): f"LABEL_{i}" for i in range(config.num_labels)} if config is not None else {}
    return {
        "model_id": served.name if served is not None else None,
        "model_sha": None,
        "model_dtype": "float32",
        "model_type": {"reranker": {"id2label": labels, "label2id": {v: int(k) for k, v in labels.items()}}},
        "max_concurrent_requests": settings.max_queue_pairs,
        "max_input_length": served.scorer.tokenizer.max_length if served is not None else None,
        "max_batch_tokens": settings.max_batch_tokens,
        "max_batch_requests": settings.resolved_max_batch_pairs(),
        "max_client_batch_size": settings.max_pairs_per_request,
        "auto_truncate": AUTO_TRUNCATE,
        "tokenization_workers": settings.tokenize_threads,
    }
