"""One-shot setup that wires a search engine to hashrank, then runs a demo search (stdlib only).

  python setup_search.py opensearch    --engine-url http://opensearch:9200    --reranker-url http://hashrank:8080
  python setup_search.py elasticsearch --engine-url http://elasticsearch:9200 --reranker-url http://hashrank:8080

OpenSearch: an ML Commons HTTP connector to hashrank's Cohere-compatible POST /v1/rerank (with the
built-in cohere pre/post-processing functions), a remote model, and a search pipeline whose `rerank`
response processor reorders hits. Elasticsearch: a `hugging_face` inference endpoint of task `rerank`
pointing at hashrank's TEI-compatible POST /rerank, used by a `text_similarity_reranker` retriever.
`--dry-run` prints every request instead of sending it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

INDEX = "hashrank-demo"
PIPELINE = "hashrank-rerank"
INFERENCE_ID = "hashrank-rerank"
QUERY = "how do cats see in the dark"
DOCS = [
    "Cats have a reflective layer behind the retina, the tapetum lucidum, that helps them see in low light.",
    "The dark side of the moon is not actually dark; it receives as much sunlight as the near side.",
    "Dogs and cats are the most popular pets in many countries.",
    "Night vision in cats comes from many rod cells and pupils that open very wide in the dark.",
    "Seeing a black cat at night is considered bad luck in some cultures.",
]


class Engine:
    def __init__(self, base_url: str, dry_run: bool) -> None:
        self.base_url = base_url.rstrip("/")
        self.dry_run = dry_run

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        if self.dry_run:
            print(json.dumps({"method": method, "path": path, "body": body}))
            return {"connector_id": "<connector_id>", "model_id": "<model_id>", "hits": {"hits": []}}
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise SystemExit(f"{method} {path} -> {exc.code}: {exc.read().decode(errors='replace')}") from exc


def index_demo_docs(engine: Engine) -> None:
    engine.call("PUT", f"/{INDEX}", {"mappings": {"properties": {"text": {"type": "text"}}}})
    for i, text in enumerate(DOCS):
        engine.call("PUT", f"/{INDEX}/_doc/{i}?refresh=true", {"text": text})


def opensearch_connector(reranker_url: str) -> dict[str, Any]:
    """Cohere-shaped connector. The built-in pre-process sets top_n to the number of hits, so every
    document comes back scored, which the post-process needs to map scores back to input order."""
    host = reranker_url.split("://", 1)[1]
    return {
        "name": "hashrank rerank",
        "description": "hashrank cross-encoder via its Cohere-compatible /v1/rerank",
        "version": "1",
        "protocol": "http",
        "parameters": {"endpoint": host, "model": "rerank-hash-nano"},
        "credential": {"api_key": "unused"},
        "actions": [
            {
                "action_type": "predict",
                "method": "POST",
                "url": "http://${parameters.endpoint}/v1/rerank",
                "headers": {"Authorization": "Bearer ${credential.api_key}", "Content-Type": "application/json"},
                "request_body": (
                    '{ "documents": ${parameters.documents}, "query": "${parameters.query}", '
                    '"model": "${parameters.model}", "top_n": ${parameters.top_n} }'
                ),
                "pre_process_function": "connector.pre_process.cohere.rerank",
                "post_process_function": "connector.post_process.cohere.rerank",
            }
        ],
    }


def setup_opensearch(engine: Engine, reranker_url: str) -> None:
    engine.call(
        "PUT",
        "/_cluster/settings",
        {
            "persistent": {
                "plugins.ml_commons.trusted_connector_endpoints_regex": [r"^https?://.*$"],
                "plugins.ml_commons.connector.private_ip_enabled": True,
                "plugins.ml_commons.only_run_on_ml_node": False,
            }
        },
    )
    connector_id = engine.call("POST", "/_plugins/_ml/connectors/_create", opensearch_connector(reranker_url))[
        "connector_id"
    ]
    model = {"name": "hashrank", "function_name": "remote", "connector_id": connector_id}
    model_id = engine.call("POST", "/_plugins/_ml/models/_register?deploy=true", model)["model_id"]
    pipeline = {
        "description": "rerank hits with hashrank",
        "response_processors": [
            {"rerank": {"ml_opensearch": {"model_id": model_id}, "context": {"document_fields": ["text"]}}}
        ],
    }
    engine.call("PUT", f"/_search/pipeline/{PIPELINE}", pipeline)
    index_demo_docs(engine)
    search = {
        "query": {"match": {"text": QUERY}},
        "ext": {"rerank": {"query_context": {"query_text": QUERY}}},
    }
    print_hits(engine.call("POST", f"/{INDEX}/_search?search_pipeline={PIPELINE}", search))


def setup_elasticsearch(engine: Engine, reranker_url: str) -> None:
    endpoint = {
        "service": "hugging_face",
        "service_settings": {"api_key": "unused", "url": f"{reranker_url.rstrip('/')}/rerank"},
        "task_settings": {"return_documents": True},
    }
    engine.call("PUT", f"/_inference/rerank/{INFERENCE_ID}", endpoint)
    index_demo_docs(engine)
    search = {
        "retriever": {
            "text_similarity_reranker": {
                "retriever": {"standard": {"query": {"match": {"text": QUERY}}}},
                "field": "text",
                "inference_id": INFERENCE_ID,
                "inference_text": QUERY,
                "rank_window_size": 100,
            }
        }
    }
    print_hits(engine.call("POST", f"/{INDEX}/_search", search))


def print_hits(response: dict[str, Any]) -> None:
    for hit in response.get("hits", {}).get("hits", []):
        print(f"{hit.get('_score', 0):.4f}  {hit['_source']['text']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("engine", choices=["opensearch", "elasticsearch"])
    parser.add_argument("--engine-url", required=True)
    parser.add_argument("--reranker-url", required=True)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    engine = Engine(args.engine_url, args.dry_run)
    if not args.dry_run:
        time.sleep(2)  # healthchecks pass slightly before plugins finish initialising
    (setup_opensearch if args.engine == "opensearch" else setup_elasticsearch)(engine, args.reranker_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
