"""The client libraries themselves, run against a real uvicorn on 127.0.0.1: Cohere SDK v1 and v2
(base_url), LangChain CohereRerank, Haystack HuggingFaceTEIRanker, LlamaIndex TEI reranker. Each is
skipped when its package is not installed (they are test-only extras, never serving dependencies)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.compat.conftest import DOCS, QUERY, RERANK, ranked

# Importing haystack and llama_index alone takes seconds on 2 cores.
pytestmark = pytest.mark.slow
TOP = 2


@pytest.fixture(scope="module")
def expected(server_url: str) -> list[float]:
    """The native /rank scores of DOCS on the reranker, in input order."""
    body = httpx.post(f"{server_url}/rank", json={"query": QUERY, "documents": DOCS, "model": RERANK}).json()
    scores = [0.0] * len(DOCS)
    for r in body["results"]:
        scores[r["index"]] = r["relevance_score"]
    return scores


def assert_top(pairs: list[tuple[int, float]], expected: list[float]) -> None:
    """(index, score) pairs as a client reports them: the best TOP documents with the server's scores."""
    assert [i for i, _ in pairs] == ranked(expected)[:TOP]
    assert [s for _, s in pairs] == pytest.approx([expected[i] for i, _ in pairs], abs=1e-6)


def test_cohere_sdk_v1(server_url: str, expected: list[float]) -> None:
    cohere = pytest.importorskip("cohere")
    client = cohere.Client(api_key="unused", base_url=server_url)
    response = client.rerank(model=RERANK, query=QUERY, documents=DOCS, top_n=TOP, return_documents=True)
    assert_top([(r.index, r.relevance_score) for r in response.results], expected)
    assert all(r.document is not None and r.document.text == DOCS[r.index] for r in response.results)
    assert response.meta is not None and response.meta.api_version.version == "1"
    assert response.meta.billed_units.search_units == 1
    # Object documents with rank_fields (v1 only), ids kept.
    docs: list[Any] = [{"title": "cats", "text": d, "id": i} for i, d in enumerate(DOCS)]
    response = client.rerank(model=RERANK, query=QUERY, documents=docs, rank_fields=["title", "text"])
    assert len(response.results) == len(DOCS)
    with pytest.raises(cohere.core.api_error.ApiError) as info:
        client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS)
    assert info.value.status_code == 404 and RERANK in info.value.body["message"]


def test_cohere_sdk_v2(server_url: str, expected: list[float]) -> None:
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key="unused", base_url=server_url)
    response = client.rerank(model=RERANK, query=QUERY, documents=DOCS, top_n=TOP, max_tokens_per_doc=512, priority=0)
    assert_top([(r.index, r.relevance_score) for r in response.results], expected)
    assert response.meta is not None and response.meta.api_version.version == "2"
    with pytest.raises(cohere.errors.BadRequestError) as info:
        client.rerank(model=RERANK, query=QUERY, documents=[])
    assert info.value.body == {"message": "invalid request: list of documents must not be empty"}


def test_langchain_cohere_rerank(server_url: str, expected: list[float]) -> None:
    langchain_cohere = pytest.importorskip("langchain_cohere")
    documents = pytest.importorskip("langchain_core.documents")
    reranker = langchain_cohere.CohereRerank(model=RERANK, base_url=server_url, cohere_api_key="unused", top_n=TOP)
    out = reranker.compress_documents([documents.Document(page_content=d) for d in DOCS], QUERY)
    assert_top([(DOCS.index(d.page_content), d.metadata["relevance_score"]) for d in out], expected)


def test_haystack_tei_ranker(server_url: str, expected: list[float]) -> None:
    ranker_module = pytest.importorskip("haystack_integrations.components.rankers.huggingface_api")
    haystack = pytest.importorskip("haystack")
    ranker = ranker_module.HuggingFaceTEIRanker(url=server_url, top_k=TOP, token=None)
    for direction in (None, ranker_module.TruncationDirection.LEFT, ranker_module.TruncationDirection.RIGHT):
        out = ranker.run(
            query=QUERY, documents=[haystack.Document(content=d) for d in DOCS], truncation_direction=direction
        )
        assert_top([(DOCS.index(d.content), d.score) for d in out["documents"]], expected)


def test_llama_index_tei_rerank(server_url: str, expected: list[float]) -> None:
    tei = pytest.importorskip("llama_index.postprocessor.tei_rerank")
    schema = pytest.importorskip("llama_index.core.schema")
    reranker = tei.TextEmbeddingInference(base_url=server_url, top_n=TOP)
    nodes = [schema.NodeWithScore(node=schema.TextNode(text=d), score=0.0) for d in DOCS]
    out = reranker.postprocess_nodes(nodes, schema.QueryBundle(QUERY))
    assert_top([(DOCS.index(n.node.text), n.score) for n in out], expected)


def test_llama_index_jina_rerank(server_url: str, expected: list[float]) -> None:
    jina = pytest.importorskip("llama_index.postprocessor.jinaai_rerank")
    schema = pytest.importorskip("llama_index.core.schema")
    reranker = jina.JinaRerank(base_url=f"{server_url}/v1", model=RERANK, api_key="unused", top_n=TOP)
    nodes = [schema.NodeWithScore(node=schema.TextNode(text=d), score=0.0) for d in DOCS]
    out = reranker.postprocess_nodes(nodes, schema.QueryBundle(QUERY))
    assert_top([(DOCS.index(n.node.text), n.score) for n in out], expected)
    wrong = jina.JinaRerank(base_url=f"{server_url}/v1", api_key="unused")  # its default model is not served
    with pytest.raises(RuntimeError, match=RERANK):  # it raises resp["detail"]
        wrong.postprocess_nodes(nodes, schema.QueryBundle(QUERY))


def test_llama_index_cohere_rerank(server_url: str, expected: list[float]) -> None:
    cohere_rerank = pytest.importorskip("llama_index.postprocessor.cohere_rerank")
    schema = pytest.importorskip("llama_index.core.schema")
    reranker = cohere_rerank.CohereRerank(model=RERANK, api_key="unused", base_url=server_url, top_n=TOP)
    nodes = [schema.NodeWithScore(node=schema.TextNode(text=d), score=0.0) for d in DOCS]
    out = reranker.postprocess_nodes(nodes, schema.QueryBundle(QUERY))
    assert_top([(DOCS.index(n.node.text), n.score) for n in out], expected)
