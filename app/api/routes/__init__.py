"""One module per resource; each exposes `router`."""

from __future__ import annotations

from typing import Any

from app.schemas import ErrorResponse

# Documented in OpenAPI for every scoring route; all share the error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        404: "Unknown model",
        413: "Too many pairs/documents, or too large a body",
        422: "Invalid body (the field is in error.param)",
        429: "Queue full; retry after the Retry-After header",
        503: "Not ready (loading, warming up, draining)",
        504: "Deadline passed before scoring",
    }.items()
}
