"""The OpenAPI document with this server's own limits, so a client generated from it sends what we accept.

Request schemas are written with fixed ceilings (schemas.TIMEOUT_CEILING_MS); the configured ones
(HASHRANK_MAX_TIMEOUT_MS) replace them here, once, when /openapi.json is first built."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.schemas import TIMEOUT_CEILING_MS
from app.settings import Settings


def install_openapi(app: FastAPI, settings: Settings) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _replace_maximum(build(), TIMEOUT_CEILING_MS, settings.max_timeout_ms)
        return app.openapi_schema  # type: ignore[return-value]  # set by build()

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise it


def _replace_maximum(node: Any, ceiling: int, limit: int) -> None:
    if isinstance(node, dict):
        if node.get("maximum") == ceiling:
            node["maximum"] = limit
        for value in node.values():
            _replace_maximum(value, ceiling, limit)
    elif isinstance(node, list):
        for value in node:
            _replace_maximum(value, ceiling, limit)
