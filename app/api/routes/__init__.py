"""One module per resource; each exposes `router`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from app.schemas import ErrorResponse

# Why each error status happens; every route documents the ones it can return, with its dialect's body.
ERROR_TEXT = {
    400: "Body not parseable as JSON",
    401: "Missing or wrong API key (only when HASHRANK_API_KEY is set)",
    404: "Unknown model",
    405: "Another method on this path; the Allow header lists the right one",
    408: "Headers or body arrived slower than HASHRANK_READ_TIMEOUT_S; the connection is closed",
    413: "Too many pairs/documents, or too large a body",
    422: "Invalid body (the field is in error.param)",
    429: "Queue full; retry after the Retry-After header",
    503: "Not ready (loading, warming up, draining)",
    504: "Deadline passed before scoring (the request's timeout_ms or HASHRANK_TIMEOUT_MS)",
}


def error_responses(model: type[BaseModel], texts: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses, each with the dialect's error body `model`."""
    return {status: {"model": model, "description": text} for status, text in texts.items()}


# Our scoring routes, with the one error shape.
ERROR_RESPONSES = error_responses(ErrorResponse, ERROR_TEXT)
