"""Realistic request bodies from STS-B test (pairs) and WikiQA test (a question with pooled candidates).

Every workload is a deterministic list of requests built once; load generators cycle through it, so the
server, the naive baseline and the in-process ceiling all see exactly the same pairs.

    >>> wl = build_workloads(data_dir())["rank20"]
    >>> wl.requests[0].path, wl.requests[0].pairs
    ('/rank', 20)
"""

from __future__ import annotations

import csv
import os
import random
from dataclasses import dataclass
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
# Realistic mix: mostly small /rank calls (search-result reranking), some /score, a few long lists.
MIX_WEIGHTS = {"score1": 0.2, "score32": 0.1, "rank20": 0.5, "rank100": 0.2}
# Requests per workload list; enough distinct bodies that no cache or branch predictor learns one.
N_REQUESTS = 200


@dataclass(frozen=True)
class Request:
    path: str  # "/score" or "/rank"
    body: bytes  # JSON, encoded once up front so the client measures the server, not its own encoder
    pairs: int  # (query, document) pairs the server scores for this request


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    requests: list[Request]

    @property
    def mean_pairs(self) -> float:
        return sum(r.pairs for r in self.requests) / len(self.requests)

    def all_pairs(self) -> list[tuple[str, str]]:
        """Every (a, b) pair of every request, in request order (what the ceiling runs)."""
        return [pair for pairs in self.request_pairs() for pair in pairs]

    def request_pairs(self) -> list[list[tuple[str, str]]]:
        """Each request's pairs: /rank's query x documents, or /score's pairs."""
        out = []
        for request in self.requests:
            doc = orjson.loads(request.body)
            if request.path == "/score":
                out.append([(a, b) for a, b in doc["pairs"]])
            else:
                out.append([(doc["query"], d) for d in doc["documents"]])
        return out


def data_dir() -> Path:
    """../shared/data next to the checkout, or HASHRANK_DATA_DIR (same rule as tests/conftest.py)."""
    return Path(os.environ.get("HASHRANK_DATA_DIR", ROOT.parent / "shared" / "data"))


def load_sts_pairs(root: Path) -> list[tuple[str, str]]:
    """STS-B test sentence pairs (tab-separated; some rows carry extra source columns after the pair)."""
    with open(root / "stsbenchmark" / "sts-test.csv", encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [(row[5], row[6]) for row in rows if len(row) >= 7]


def load_wikiqa(root: Path) -> list[tuple[str, list[str]]]:
    """WikiQA test: (question, its candidate sentences) in file order."""
    grouped: dict[str, tuple[str, list[str]]] = {}
    with open(root / "wikiqa" / "WikiQA-test.tsv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            grouped.setdefault(row["QuestionID"], (row["Question"], []))[1].append(row["Sentence"])
    return list(grouped.values())


def pooled_rank_bodies(questions: list[tuple[str, list[str]]], n_docs: int, n: int, seed: int) -> list[Request]:
    """1 query x n_docs: the question's own candidates first, topped up with candidates of other questions.

    WikiQA questions have ~10 candidates; a first-stage retriever returns 20-100, mostly off-topic, which
    is what the other questions' sentences stand in for.
    """
    rng = random.Random(seed)
    pool = [s for _, cands in questions for s in cands]
    out = []
    for i in range(n):
        query, own = questions[i % len(questions)]
        docs = own[:n_docs] + rng.sample(pool, n_docs - min(len(own), n_docs))
        rng.shuffle(docs)
        body = orjson.dumps({"query": query, "documents": docs})
        out.append(Request("/rank", body, len(docs)))
    return out


def score_bodies(pairs: list[tuple[str, str]], per_request: int, n: int, seed: int) -> list[Request]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chosen = rng.sample(pairs, per_request)
        out.append(Request("/score", orjson.dumps({"pairs": [list(p) for p in chosen]}), per_request))
    return out


def mix_bodies(parts: dict[str, list[Request]], n: int, seed: int) -> list[Request]:
    rng = random.Random(seed)
    names = list(MIX_WEIGHTS)
    picks = rng.choices(names, weights=[MIX_WEIGHTS[k] for k in names], k=n)
    return [parts[name][i % len(parts[name])] for i, name in enumerate(picks)]


def build_workloads(root: Path, n: int = N_REQUESTS, seed: int = 0) -> dict[str, Workload]:
    """The five scenarios, by name: score1, score32, rank20, rank100, mix."""
    sts = load_sts_pairs(root)
    wikiqa = load_wikiqa(root)
    parts = {
        "score1": score_bodies(sts, 1, n, seed),
        "score32": score_bodies(sts, 32, n, seed + 1),
        "rank20": pooled_rank_bodies(wikiqa, 20, n, seed + 2),
        "rank100": pooled_rank_bodies(wikiqa, 100, n, seed + 3),
    }
    described = {
        "score1": "POST /score, 1 STS-B pair",
        "score32": "POST /score, 32 STS-B pairs",
        "rank20": "POST /rank, 1 WikiQA query x 20 pooled candidates",
        "rank100": "POST /rank, 1 WikiQA query x 100 pooled candidates",
    }
    out = {name: Workload(name, described[name], reqs) for name, reqs in parts.items()}
    mix_desc = ", ".join(f"{int(w * 100)}% {k}" for k, w in MIX_WEIGHTS.items())
    out["mix"] = Workload("mix", f"realistic mix: {mix_desc}", mix_bodies(parts, n, seed + 4))
    return out
