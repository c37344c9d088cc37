"""Schemathesis hooks for test_contract.py (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    """Cohere v1's rank_fields must name a field each object document has (else 400, as documented): a rule
    across two fields that JSON Schema cannot state, so bodies that break it are not generated."""
    if not isinstance(body, dict) or not isinstance(body.get("rank_fields"), list):
        return True
    fields = body["rank_fields"] or ["text"]
    documents = body.get("documents") if isinstance(body.get("documents"), list) else []
    objects = [doc for doc in documents if isinstance(doc, dict)]
    return all(any(doc.get(f) is not None for f in fields if isinstance(f, str)) for doc in objects)
