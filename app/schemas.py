"""Request and response bodies of our own API (/score, /rank). Limits that depend on settings (pairs per
request, timeout ceiling) are checked by the Reranker so they can be configured; the rest is here."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    WithJsonSchema,
)

from app.chunking import Aggregation
from app.reranker import Scores

Truncation = Literal["longest_first", "only_second"]
# A day: anything longer is a client bug, and it keeps absurd numbers out of the arithmetic.
TIMEOUT_CEILING_MS = 86_400_000


def _utf8(text: str) -> str:
    # JSON may carry lone surrogates ("\ud800"), which Python accepts but no tokenizer or encoder can.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (it contains a lone surrogate); send UTF-8 text") from None
    return text


def _json_number(value: Any) -> Any:
    # JSON Schema's integer is a number (5 and 5.0, not "5" nor true): pydantic's lax mode would take "5" and true.
    if isinstance(value, str | bytes | bool):
        raise ValueError("expected an integer")
    return value


# Integers as JSON Schema means them; booleans strict (0, 1 and "true" are not booleans). The constraint
# goes before the validator, or pydantic leaves it out of the JSON schema.
JsonInt = Annotated[int, BeforeValidator(_json_number)]
Count = Annotated[int, Field(ge=1), BeforeValidator(_json_number)]
Milliseconds = Annotated[int, Field(gt=0, le=TIMEOUT_CEILING_MS), BeforeValidator(_json_number)]
Bool = StrictBool


def _pair_object(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) != {"a", "b"}:
            raise ValueError("a pair object has exactly the keys 'a' and 'b'")
        return (value["a"], value["b"])
    return value


def _document_object(value: Any) -> Any:
    return {"text": value} if isinstance(value, str) else value


Text = Annotated[str, AfterValidator(_utf8)]
Pair = Annotated[
    tuple[Text, Text],
    BeforeValidator(_pair_object),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
                {
                    "type": "object",
                    "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                    "required": ["a", "b"],
                    "additionalProperties": False,
                },
            ]
        }
    ),
]
TimeoutMs = Annotated[
    Milliseconds | None,
    Field(description="Deadline in ms; past it the request gets 504."),
]
ModelName = Annotated[str | None, Field(description="A name from GET /models; default: the route's default.")]


class Document(BaseModel):
    """A document to rank: a string, or an object whose `text` is scored and whose other fields come back."""

    model_config = ConfigDict(extra="allow")

    text: Text
    id: Any = None


DOCUMENT_SCHEMA = {
    "anyOf": [
        {"type": "string"},
        {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
    ]
}


class ScoreRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"pairs": [["A man is eating.", "Someone eats food."]]}]},
    )

    pairs: list[Pair] = Field(description='[["a", "b"], ...] or [{"a": ..., "b": ...}, ...]')
    model: ModelName = None
    raw_scores: Bool = Field(False, description="Return logits instead of sigmoid scores in [0, 1].")
    truncate: Bool = Field(True, description="Cut pairs over max_length; false makes them a 422.")
    truncation: Truncation = "longest_first"
    timeout_ms: TimeoutMs = None


class RankRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"query": "capital of France", "documents": ["Paris", "Bananas"]}]},
    )

    query: Text
    documents: list[Annotated[Document, BeforeValidator(_document_object), WithJsonSchema(DOCUMENT_SCHEMA)]] = Field(
        description='Strings, or objects {"text": ..., "id"?: ..., ...} whose other fields are kept.'
    )
    top_n: Count | None = Field(None, description="Return the best top_n; default: all documents.")
    return_documents: Bool = False
    model: ModelName = None
    raw_scores: Bool = False
    truncate: Bool = True
    truncation: Truncation = Field("only_second", description="only_second cuts documents, never the query.")
    max_chunks_per_doc: Count | None = Field(
        None,
        description="Score a document over max_length as up to this many overlapping windows, each with the "
        "whole query, instead of truncating it; default: truncate.",
    )
    chunk_aggregation: Aggregation = Field("max", description="Windows -> document score: max, mean or first.")
    timeout_ms: TimeoutMs = None


class Usage(BaseModel):
    pairs: int
    tokens: int
    truncated: int
    chunks: int | None = Field(None, description="/rank with max_chunks_per_doc: windows scored.")


class ScoreResponse(BaseModel):
    scores: list[float]
    model: str
    usage: Usage


class RankResult(BaseModel):
    index: int
    relevance_score: float
    id: Any = Field(None, description="The document's id, when it had one.")
    document: dict[str, Any] | None = Field(None, description="With return_documents: the document as sent.")


class RankResponse(BaseModel):
    results: list[RankResult]
    model: str
    usage: Usage


class ErrorDetail(BaseModel):
    type: str
    message: str
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


# Responses are built as plain dicts for orjson: validating a 1,000-result response model again costs
# more than the whole forward pass of the nano model.


def usage_dict(scores: Scores) -> dict[str, int]:
    u = scores.usage
    return {"pairs": u.pairs, "tokens": u.tokens, "truncated": u.truncated}


def score_response(scores: Scores) -> dict[str, Any]:
    return {"scores": [r.score for r in scores.results], "model": scores.model, "usage": usage_dict(scores)}


def rank_response(scores: Scores, request: RankRequest) -> dict[str, Any]:
    results = []
    for r in scores.results:
        doc = request.documents[r.index]
        item: dict[str, Any] = {"index": r.index, "relevance_score": r.score}
        if "id" in doc.model_fields_set:
            item["id"] = doc.id
        if request.return_documents:
            item["document"] = doc.model_dump(exclude_unset=True)
        results.append(item)
    usage: dict[str, int] = usage_dict(scores)
    if scores.usage.chunks:
        usage["chunks"] = scores.usage.chunks
    return {"results": results, "model": scores.model, "usage": usage}
