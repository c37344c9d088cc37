"""Reranker: the service behind every route. `score(pairs)` and `rank(query, documents)` over the models
this process serves; `rank` is `score` + sort + `top_n` slice, so the two cannot drift apart.

Each model is a `ServedModel`: the shared `Scorer` (tokenizer, runtime, activation: the same path as
`hashrank score`) plus its own `DynamicBatcher`. Results are plain dataclasses that any API dialect
(ours, TEI, Cohere, Jina) can reshape.

    >>> result = await reranker.rank("capital of France", ["Paris is in France", "Bananas"], top_n=1)
    >>> result.results[0]
    PairScore(index=0, score=0.93..., truncated=False, tokens=12)
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import struct
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np

from app.batching import INLINE_PADDED_TOKENS, DynamicBatcher
from app.cache import CachedScore, ScoreCache, model_fingerprint
from app.chunking import Aggregation, Chunker, aggregate
from app.errors import DeadlineExceeded, InvalidInput, ModelLoadError, NotReady, PayloadTooLarge, UnknownModel
from app.metrics import Metrics, ModelMetrics
from app.modeling.tokenizer import EncodedPair, Truncation
from app.runtime.memory import release_free_memory
from app.scorer import Scorer
from app.settings import Settings

# Requests up to this many characters are tokenized on the event loop (~0.1 ms per 400 characters here);
# longer ones go to the tokenizer pool so they do not hold up other requests' I/O.
INLINE_TOKENIZE_CHARS = 2000

log = logging.getLogger(__name__)

Task = Literal["score", "rank"]


@dataclass(frozen=True)
class PairScore:
    index: int  # position of the pair (or document) in the request
    score: float  # sigmoid in [0, 1], or the raw logit
    truncated: bool
    tokens: int  # tokens of the encoded pair, special tokens included


@dataclass(frozen=True)
class Usage:
    pairs: int
    tokens: int
    truncated: int
    chunks: int = 0  # windows scored for documents split by chunking (rank with max_chunks); 0 otherwise


@dataclass(frozen=True)
class Scores:
    model: str
    results: list[PairScore]  # score(): input order; rank(): best first, cut to top_n
    usage: Usage


class ServedModel:
    """One loaded model: its scorer, its batcher and its metric children."""

    def __init__(
        self,
        name: str,
        path: Path,
        scorer: Scorer,
        metrics: ModelMetrics,
        settings: Settings,
        alone: Callable[[], bool] = lambda: False,
    ) -> None:
        self.name = name
        self.path = path
        self.scorer = scorer
        self.metrics = metrics
        self.parameters = count_parameters(path)
        self.chunker = Chunker.from_dir(path, scorer.tokenizer.max_length)
        self.warmed = False
        self.cache: ScoreCache | None = None
        if settings.cache_mb > 0:
            fingerprint = model_fingerprint(path, scorer.runtime.backend, scorer.tokenizer.max_length)
            self.cache = ScoreCache(settings.cache_mb << 20, fingerprint)
        self.batcher = DynamicBatcher(
            self.run_batch,
            metrics,
            max_batch_pairs=settings.resolved_max_batch_pairs(),
            max_batch_tokens=settings.max_batch_tokens,
            max_wait_ms=settings.max_wait_ms,
            max_queue_pairs=settings.max_queue_pairs,
            max_padding_ratio=settings.max_padding_ratio,
            inline_padded_tokens=INLINE_PADDED_TOKENS,
            alone=alone,
            name=name,
        )

    def run_batch(self, pairs: list[EncodedPair]) -> np.ndarray:
        """(N, num_labels) logits; runs in the batcher's worker thread (padding included)."""
        return self.scorer.runtime.run(self.scorer.tokenizer.pad(pairs))

    def warm_up(self, max_batch_pairs: int, max_batch_tokens: int) -> None:
        """Run the batch shapes serving will see first (one short pair, a full batch of 64 tokens) so the first
        requests do not pay for ONNX Runtime's lazy initialisation. Not max_length: a batch of 8 x 512 tokens
        would lift the worker's peak memory by ~90 MB for a shape most deployments never see."""
        max_length = self.scorer.tokenizer.max_length
        tokenizer = self.scorer.tokenizer
        for width in sorted({8, min(64, max_length)}):
            n = 1 if width == 8 else max(1, min(max_batch_pairs, max_batch_tokens // width))
            words = max(1, (width - 3) // 2)
            pair = tokenizer.encode_pairs([("warm " * words, "up " * (width - 3 - words))])[0]
            self.run_batch([pair] * n)
        release_free_memory()  # the widest warm-up batch's activations are not needed until such a batch comes
        self.warmed = True

    def info(self) -> dict[str, Any]:
        config = self.scorer.config
        return {
            "name": self.name,
            "path": str(self.path),
            "backend": self.scorer.runtime.backend,
            "model_type": config.model_type,
            "parameters": self.parameters,
            "max_length": self.scorer.tokenizer.max_length,
            "num_labels": config.num_labels,
            "activation": config.activation,
            "ready": self.warmed and self.batcher.healthy,
        }


class Reranker:
    def __init__(self, models: dict[str, ServedModel], settings: Settings) -> None:
        if not models:
            raise ModelLoadError("no model to serve")
        self.models = models
        self.settings = settings
        self.default_score, self.default_rank = settings.default_models(list(models))
        for name in (self.default_score, self.default_rank):
            if name not in models:
                raise ModelLoadError(f"default model {name!r} is not served; served: {sorted(models)}")
        self._tokenize_pool = ThreadPoolExecutor(settings.tokenize_threads, thread_name_prefix="tokenize")
        self.started = False
        self.draining = False

    @classmethod
    def load(cls, settings: Settings, metrics: Metrics, alone: Callable[[], bool] = lambda: False) -> Reranker:
        """Load every configured model (blocking: ONNX sessions are built here). `alone`: whether the calling
        request is the only one in the server (app/api/open_requests.py), for the batchers' direct lane."""
        paths = settings.resolved_models()
        if not paths:
            raise ModelLoadError(
                f"no model to serve: none of the default models exists under {settings.resolved_model_dir()}; "
                "set HASHRANK_MODELS=name=path or HASHRANK_MODEL_DIR"
            )
        models: dict[str, ServedModel] = {}
        for name, path in paths.items():
            if not path.is_dir():
                raise ModelLoadError(f"model {name!r}: {path} is not a directory")
            scorer = Scorer.load(
                path, settings.backend, threads=settings.resolved_threads(), max_length=settings.max_length
            )
            models[name] = ServedModel(name, path, scorer, metrics.for_model(name), settings, alone)
            metrics.model_info.labels(
                name, scorer.runtime.backend, str(models[name].parameters or ""), str(scorer.tokenizer.max_length)
            ).set(1)
            log.info("loaded model %r from %s (%s)", name, path, scorer.runtime.backend)
        return cls(models, settings)

    # ---- lifecycle ----

    def start(self) -> None:
        for served in self.models.values():
            served.batcher.start()
        self.started = True

    async def warm_up(self) -> None:
        s = self.settings
        for served in self.models.values():
            if s.warmup:
                await asyncio.to_thread(served.warm_up, s.resolved_max_batch_pairs(), s.max_batch_tokens)
            else:
                served.warmed = True
            log.info("model %r is warm", served.name)

    async def stop(self) -> None:
        self.draining = True
        await asyncio.gather(*(served.batcher.stop() for served in self.models.values() if self.started))
        self._tokenize_pool.shutdown(wait=False, cancel_futures=True)

    @property
    def accepting(self) -> bool:
        """Loaded, warmed up and not draining: requests are let in."""
        return self.started and not self.draining and all(m.warmed for m in self.models.values())

    @property
    def ready(self) -> bool:
        """Accepting, and the last forward pass of every model succeeded."""
        return self.accepting and all(m.batcher.healthy for m in self.models.values())

    async def probe(self) -> bool:
        """Readiness after a failed forward pass: score one pair through each unhealthy model."""
        for served in self.models.values():
            if served.warmed and not served.batcher.healthy:
                try:
                    await self.score([("probe", "probe")], model=served.name, timeout_ms=2000)
                except Exception:  # the probe reports, it does not raise
                    log.warning("readiness probe of model %r failed", served.name, exc_info=True)
        return self.ready

    def resolve(self, name: str | None, task: Task = "score") -> ServedModel:
        if name is None:
            name = self.default_score if task == "score" else self.default_rank
        served = self.models.get(name)
        if served is None:
            raise UnknownModel(
                f"model {name!r} is not served here; use one of: {', '.join(self.models)}", param="model"
            )
        return served

    # ---- scoring ----

    async def score(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        model: str | None = None,
        raw: bool = False,
        truncate: bool = True,
        truncation: Truncation = "longest_first",
        timeout_ms: int | None = None,
        param: str = "pairs",
    ) -> Scores:
        """Scores of (a, b) pairs in input order."""
        served = self.resolve(model, "score")
        deadline = time.monotonic() + self._timeout_s(timeout_ms)
        if len(pairs) > self.settings.max_pairs_per_request:
            raise PayloadTooLarge(
                f"{len(pairs)} {param} in one request; the limit is {self.settings.max_pairs_per_request}: "
                "split the request",
                param=param,
            )
        if not self.accepting:
            raise NotReady("the model is still warming up or the server is draining; retry shortly")
        found = await self._score_pairs(served, pairs, truncation, truncate, deadline)
        logits = np.stack([f.logits for f in found]) if found else np.empty((0, served.scorer.config.num_labels))
        scores = logits[:, 0].astype(np.float64) if raw else served.scorer.activate(logits)
        pairs_found = enumerate(zip(scores, found, strict=True))
        results = [PairScore(i, float(s), f.truncated, f.tokens) for i, (s, f) in pairs_found]
        usage = Usage(len(results), sum(r.tokens for r in results), sum(r.truncated for r in results))
        return Scores(served.name, results, usage)

    async def _score_pairs(
        self,
        served: ServedModel,
        pairs: Sequence[tuple[str, str]],
        truncation: Truncation,
        truncate: bool,
        deadline: float,
    ) -> list[CachedScore]:
        """Logits, tokens and truncation of each pair: from the cache where it has them, else tokenized and
        queued for a forward pass (only the missing pairs count against the queue)."""
        cache = served.cache
        keys = cache.keys(pairs, truncation, truncate=truncate) if cache is not None else []
        found: list[CachedScore | None] = cache.get_many(keys) if cache is not None else [None] * len(pairs)
        missing = [i for i, f in enumerate(found) if f is None]
        if cache is not None:
            served.metrics.cache_hits.inc(len(pairs) - len(missing))
            served.metrics.cache_misses.inc(len(missing))
        # Admitted before tokenizing (an overloaded server spends no CPU on work it refuses), and counted in
        # the queue while tokenizing, so that admission sees what the tokenizer pool still holds.
        request = served.batcher.reserve(len(missing), deadline)
        try:  # under overload the tokenizer pool has a queue too: waiting in it past the deadline is pointless
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                encoded = await self._tokenize(served, [pairs[i] for i in missing], truncation, truncate)
        except TimeoutError:
            served.batcher.abandon(request, "deadline")
            raise DeadlineExceeded(
                "the request's deadline passed while its pairs waited to be tokenized; raise timeout_ms or retry"
            ) from None
        except asyncio.CancelledError:
            served.batcher.abandon(request, "disconnect")
            raise
        except BaseException:
            served.batcher.abandon(request, "")
            raise
        served.batcher.enqueue(request, encoded, [len(e) for e in encoded])
        rows = await served.batcher.wait(request)
        fresh = [CachedScore(row, len(e), e.truncated) for row, e in zip(rows, encoded, strict=True)]
        for i, entry in zip(missing, fresh, strict=True):
            found[i] = entry
        if cache is not None:
            cache.put_many([keys[i] for i in missing], fresh)
            served.metrics.cache_entries.set(len(cache))
        return [f for f in found if f is not None]

    async def rank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        model: str | None = None,
        top_n: int | None = None,
        raw: bool = False,
        truncate: bool = True,
        truncation: Truncation = "only_second",
        timeout_ms: int | None = None,
        max_chunks: int | None = None,
        aggregation: Aggregation = "max",
    ) -> Scores:
        """Documents best first (ties by index), cut to top_n; the query is never cut with only_second.
        With max_chunks, a document over max_length is scored as up to max_chunks overlapping windows
        (each with the query) whose scores are aggregated, instead of being truncated."""
        name = self.resolve(model, "rank").name
        if max_chunks is not None:
            scored = await self._score_chunked(query, documents, name, raw, max_chunks, aggregation, timeout_ms)
            return Scores(scored.model, _best_first(scored.results, top_n), scored.usage)
        scored = await self.score(
            [(query, doc) for doc in documents],
            model=name,
            raw=raw,
            truncate=truncate,
            truncation=truncation,
            timeout_ms=timeout_ms,
            param="documents",
        )
        return Scores(scored.model, _best_first(scored.results, top_n), scored.usage)

    async def _score_chunked(
        self,
        query: str,
        documents: Sequence[str],
        model: str,
        raw: bool,
        max_chunks: int,
        aggregation: Aggregation,
        timeout_ms: int | None,
    ) -> Scores:
        """One score per document (input order) from the windows app.chunking cuts it into."""
        served = self.resolve(model, "rank")
        limit = self.settings.max_pairs_per_request
        if len(documents) > limit:
            raise PayloadTooLarge(f"{len(documents)} documents in one request; the limit is {limit}", param="documents")
        split = partial(served.chunker.split, query, documents, max_chunks)
        plan = await asyncio.get_running_loop().run_in_executor(self._tokenize_pool, split)
        if plan.n_chunks > limit:
            raise PayloadTooLarge(
                f"{len(documents)} documents make {plan.n_chunks} chunks; the limit is {limit} pairs per request: "
                "lower max_chunks_per_doc or send fewer documents",
                param="max_chunks_per_doc",
            )
        scored = await self.score(plan.pairs, model=model, raw=raw, truncation="only_second", timeout_ms=timeout_ms)
        n = len(documents)
        doc_scores = aggregate([r.score for r in scored.results], plan.owners, n, aggregation)
        tokens = np.bincount(plan.owners, weights=[r.tokens for r in scored.results], minlength=n)
        cut = list(plan.truncated)
        for r in scored.results:
            cut[plan.owners[r.index]] |= r.truncated
        results = [PairScore(i, float(doc_scores[i]), cut[i], int(tokens[i])) for i in range(n)]
        if plan.chunked_docs:
            served.metrics.documents_chunked.inc(plan.chunked_docs)
            served.metrics.chunks.inc(sum(c for c in plan.chunks_per_doc if c > 1))
        usage = Usage(scored.usage.pairs, scored.usage.tokens, sum(cut), plan.n_chunks)
        return Scores(scored.model, results, usage)

    def _timeout_s(self, timeout_ms: int | None) -> float:
        if timeout_ms is None:
            return self.settings.timeout_ms / 1000
        if timeout_ms > self.settings.max_timeout_ms:
            raise InvalidInput(
                f"timeout_ms {timeout_ms} is above the limit {self.settings.max_timeout_ms}", param="timeout_ms"
            )
        return timeout_ms / 1000

    async def _tokenize(
        self, served: ServedModel, pairs: Sequence[tuple[str, str]], truncation: Truncation, truncate: bool
    ) -> list[EncodedPair]:
        if not pairs:
            return []
        started = time.perf_counter()
        encode = partial(served.scorer.tokenizer.encode_pairs, pairs, truncation, truncate=truncate)
        if sum(len(a) + len(b) for a, b in pairs) <= INLINE_TOKENIZE_CHARS:
            encoded = encode()  # cheaper than the two thread hand-offs of the pool
        else:
            encoded = await asyncio.get_running_loop().run_in_executor(self._tokenize_pool, encode)
        served.metrics.tokenize_seconds.observe(time.perf_counter() - started)
        truncated = sum(e.truncated for e in encoded)
        if truncated:
            served.metrics.pairs_truncated.inc(truncated)
        return encoded


def _best_first(results: list[PairScore], top_n: int | None) -> list[PairScore]:
    ranked = sorted(results, key=lambda r: (-_sortable(r.score), r.index))
    return ranked[:top_n] if top_n is not None else ranked


def _sortable(score: float) -> float:
    return -math.inf if math.isnan(score) else score


def count_parameters(model_dir: Path) -> int | None:
    """Parameters in model.safetensors, read from its header only (no tensor is loaded)."""
    path = model_dir / "model.safetensors"
    try:
        with path.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error):
        return None
    return int(sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__"))
