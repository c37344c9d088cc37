"""Request bodies of the rerank dialects other servers speak, so their clients work with only a base URL
changed: TEI (`POST /rerank`, `POST /predict`), Cohere v1 and Jina (`POST /v1/rerank`), Cohere v2
(`POST /v2/rerank`). Field names and defaults follow each vendor (shared/reference/serving-peers.md §2).

Unknown fields are ignored, as TEI's serde and the vendors' own servers do: clients and proxies add
fields (`model` to TEI, `priority` to older servers) and a drop-in must not reject them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, WithJsonSchema, model_validator

from app.chunking import DEFAULT_MAX_CHUNKS, Aggregation
from app.errors import InvalidInput
from app.schemas import Bool, Count, JsonInt, Milliseconds, Text

TimeoutMs = Annotated[Milliseconds | None, Field(description="hashrank: deadline in ms.")]
ChunkAggregation = Annotated[
    Aggregation, Field(description="hashrank: how chunk scores make a document's score (max, mean, first).")
]


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


# ---- TEI ----


class TeiError(BaseModel):
    """TEI's error body."""

    error: str
    error_type: str = Field(description="Validation, Empty, Overloaded, Unhealthy or Backend")


# An empty list is TEI's 400 "Empty": the schema says so (minItems), the route answers it.
NON_EMPTY: dict[str, Any] = {"minItems": 1}
# Exactly one of texts/documents is a list (the other absent or null), as _one_list checks.
_ONE_LIST: dict[str, Any] = {
    "anyOf": [{"required": [name], "properties": {name: {"type": "array"}}} for name in ("texts", "documents")],
    "not": {"required": ["texts", "documents"], "properties": {n: {"type": "array"} for n in ("texts", "documents")}},
}


class TeiRerankRequest(BaseModel):
    """TEI's RerankRequest; `documents`/`return_documents` are the names newer Elasticsearch sends."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [{"query": "What is Deep Learning?", "texts": ["Deep Learning is..."]}],
            **_ONE_LIST,
        },
    )

    query: Text
    texts: list[Text] | None = Field(None, json_schema_extra=NON_EMPTY)
    documents: list[Text] | None = Field(
        None, description="Alias of texts (Elasticsearch 9.x sends it).", json_schema_extra=NON_EMPTY
    )
    raw_scores: Bool = False
    return_text: Bool = False
    return_documents: Bool | None = Field(None, description="Alias of return_text (Elasticsearch 9.x).")
    # None: the server's auto-truncate, which is on (TEI's default since v1.9).
    truncate: Bool | None = None
    truncation_direction: Annotated[Literal["left", "right"], BeforeValidator(_lower)] = "right"
    top_n: Count | None = Field(None, description="Keep the best top_n (Elasticsearch sends it); default all.")
    max_chunks_per_doc: Count | None = Field(
        None, description="Split long texts into windows instead of truncating (Elasticsearch sends it)."
    )
    model: str | None = None
    timeout_ms: TimeoutMs = None

    @model_validator(mode="after")
    def _one_list(self) -> TeiRerankRequest:
        if self.texts is None and self.documents is None:
            raise ValueError("send the documents to rank in `texts`")
        if self.texts is not None and self.documents is not None:
            raise ValueError("send either `texts` or `documents`, not both")
        return self

    @property
    def items(self) -> list[str]:
        return self.texts if self.texts is not None else self.documents or []

    @property
    def with_text(self) -> bool:
        return self.return_text or bool(self.return_documents)


TEXT_PAIR: dict[str, Any] = {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}
# A cross-encoder scores pairs: a bare string or a list of one text is refused (422), so only pairs are documented.
PredictInput = Annotated[
    Text | list[Text] | list[list[Text]],  # Text: lone surrogates are refused here, not in the tokenizer
    WithJsonSchema({"anyOf": [TEXT_PAIR, {"type": "array", "items": TEXT_PAIR, "minItems": 1}]}),
]


class TeiPredictRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{"inputs": ["query", "document"]}]})

    inputs: PredictInput = Field(description='["a", "b"] for one pair, or [["a", "b"], ...] for a batch.')
    raw_scores: Bool = False
    truncate: Bool | None = None
    truncation_direction: Annotated[Literal["left", "right"], BeforeValidator(_lower)] = "right"
    model: str | None = None
    timeout_ms: TimeoutMs = None

    @property
    def batched(self) -> bool:
        return isinstance(self.inputs, list) and bool(self.inputs) and isinstance(self.inputs[0], list)

    def pairs(self) -> list[tuple[str, str]]:
        """The inputs as (a, b) pairs; a single text is refused, since a cross-encoder scores pairs."""
        if not self.inputs:
            return []
        groups: list[Any] = self.inputs if self.batched else [self.inputs]  # type: ignore[assignment]
        out = []
        for i, group in enumerate(groups):
            texts = [group] if isinstance(group, str) else group
            if len(texts) != 2:
                raise InvalidInput(
                    f"input {i} has {len(texts)} text(s); a cross-encoder scores pairs: send [query, document]",
                    param="inputs",
                )
            out.append((texts[0], texts[1]))
        return out


# ---- Cohere v1 / Jina / Cohere v2 ----


class CohereError(BaseModel):
    """Cohere's error body (/v2/rerank)."""

    message: str


class CohereJinaError(CohereError):
    """/v1/rerank serves Cohere and Jina clients: Cohere's `message` and Jina's `detail`, the same text."""

    detail: str


def _field_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class CohereDocument(BaseModel):
    """A string, or an object whose fields (all kept for the response) give the text via rank_fields."""

    model_config = ConfigDict(extra="allow")
    # Sent as a plain string: rank_fields (which name object fields) do not apply to it.
    _plain: bool = PrivateAttr(False)

    def fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def text(self, rank_fields: list[str] | None) -> str | None:
        """The text to score: the rank_fields' values in order, one per line (default: `text`)."""
        values = self.fields()
        if self._plain:
            return str(values["text"])
        parts = [_field_text(values[f]) for f in (rank_fields or ["text"]) if values.get(f) is not None]
        return "\n".join(parts) if parts else None


def _document(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    doc = CohereDocument.model_validate({"text": value})
    doc._plain = True
    return doc


# Cohere v2's default cut of every document.
DEFAULT_MAX_TOKENS_PER_DOC = 4096

# A string, or an object with a non-null `text` (v1's rank_fields may name other fields instead).
_DOCUMENT_SCHEMA = {
    "anyOf": [
        {"type": "string"},
        {"type": "object", "required": ["text"], "properties": {"text": {"not": {"type": "null"}}}},
    ]
}
Documents = Annotated[
    list[Annotated[CohereDocument, BeforeValidator(_document), WithJsonSchema(_DOCUMENT_SCHEMA)]],
    Field(json_schema_extra=NON_EMPTY),
]


class _CohereRerankBase(BaseModel):
    """Fields Cohere v1 and v2 share, with hashrank's chunking and deadline extensions."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [{"model": "rerank-hash-nano", "query": "capital of the US", "documents": ["DC", "Paris"]}]
        },
    )

    query: Text
    documents: Documents
    model: str | None = None
    top_n: Count | None = Field(None, description="Default: every document.")
    max_chunks_per_doc: Count | None = Field(
        DEFAULT_MAX_CHUNKS, description=f"hashrank: windows per long document (null: {DEFAULT_MAX_CHUNKS})."
    )
    chunk_aggregation: ChunkAggregation = "max"
    timeout_ms: TimeoutMs = None


class CohereV1Request(_CohereRerankBase):
    """Cohere v1 rerank; Jina's rerank request is a subset of it (same path, same fields)."""

    rank_fields: list[str] | None = Field(
        None, description="Object fields that form the text, in order; each object document needs one (else 400)."
    )
    # None: documents come back (Jina's default); Cohere v1 clients that want none send false.
    return_documents: Bool | None = None

    def texts(self) -> list[str]:
        out = []
        for i, doc in enumerate(self.documents):
            text = doc.text(self.rank_fields)
            if text is None:
                fields = self.rank_fields or ["text"]
                raise InvalidInput(
                    f"document {i} has none of the fields {fields}; add one or set rank_fields", param="documents"
                )
            out.append(text)
        return out


class CohereV2Request(_CohereRerankBase):
    # SDK wrappers pass their own None through as null (LangChain's CohereRerank does): null is the default.
    max_tokens_per_doc: Count | None = Field(
        None, description=f"Each document is cut to this many tokens first (null: {DEFAULT_MAX_TOKENS_PER_DOC})."
    )
    # Accepted for compatibility; requests are served in arrival order.
    priority: JsonInt | None = None
    return_documents: Bool | None = Field(None, description="Sent by SDKs before July 2025; still honoured.")

    def texts(self) -> list[str]:
        out = []
        for i, doc in enumerate(self.documents):
            text = doc.text(None)
            if text is None:
                raise InvalidInput(f"document {i} has no text; v2 takes strings", param="documents")
            out.append(text)
        return out
