"""Every Prometheus metric, defined once. Call sites only .observe()/.inc()/.set().

One `Metrics` per app, on its own registry, so two apps in one process (tests) do not share counts.
With several uvicorn workers, PROMETHEUS_MULTIPROC_DIR is set before the workers start: prometheus-client
then writes every value to per-process files and `render()` merges them (gauges declare how).
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

PREFIX = "hashrank"
# Seconds: 100 us .. ~30 s, geometric (ratio 2): a batch of the nano model takes about a millisecond.
LATENCY_BUCKETS = tuple(round(1e-4 * 2**i, 6) for i in range(19))
PAIR_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256)
TOKEN_BUCKETS = tuple(float(2**i) for i in range(4, 17))
RATIO_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series double the exposition and no dashboard uses them
        if multiprocess_dir() is None:  # process metrics are per-process; multiprocess mode cannot merge them
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)

        # ---- HTTP, recorded by the middleware in app/main.py ----
        self.requests = Counter(
            f"{PREFIX}_requests", "HTTP requests by route, status and model.", ["route", "status", "model"], registry=r
        )
        self.request_seconds = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Request latency from the first byte received to the response sent.",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.read_timeouts = Counter(
            f"{PREFIX}_read_timeouts",
            "Requests answered 408 because their head or body arrived slower than read_timeout_s, by phase.",
            ["phase"],
            registry=r,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_requests_in_flight",
            "Requests being handled now, by route.",
            ["route"],
            multiprocess_mode="livesum",
            registry=r,
        )

        # ---- stages, recorded by the reranker and the batcher ----
        self.tokenize_seconds = Histogram(
            f"{PREFIX}_tokenize_duration_seconds",
            "Tokenizing one request.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_seconds = Histogram(
            f"{PREFIX}_queue_wait_duration_seconds",
            "Time a pair waits from enqueue to the start of its forward pass.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            f"{PREFIX}_inference_duration_seconds",
            "One forward pass (padding included); its _count is the number of forward passes.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_pairs = Histogram(
            f"{PREFIX}_batch_size_pairs", "Pairs per forward pass.", ["model"], buckets=PAIR_BUCKETS, registry=r
        )
        self.batch_padded_tokens = Histogram(
            f"{PREFIX}_batch_padded_tokens",
            "Padded tokens per forward pass (pairs x longest pair).",
            ["model"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.batch_padding_ratio = Histogram(
            f"{PREFIX}_batch_padding_ratio",
            "Share of a forward pass's tokens that are padding (0 = none).",
            ["model"],
            buckets=RATIO_BUCKETS,
            registry=r,
        )
        self.batch_tokens = Counter(
            f"{PREFIX}_batch_tokens",
            "Real (unpadded) tokens run; with batch_padded_tokens_sum it gives the overall padding ratio.",
            ["model"],
            registry=r,
        )
        self.batch_failures = Counter(
            f"{PREFIX}_batch_failures", "Forward passes that raised; all their waiters failed.", ["model"], registry=r
        )
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth_pairs",
            "Pairs waiting for a forward pass (not counting the one running).",
            ["model"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.pairs_scored = Counter(f"{PREFIX}_pairs_scored", "Pairs scored.", ["model"], registry=r)
        self.direct_passes = Counter(
            f"{PREFIX}_direct_passes",
            "Forward passes of a tiny request alone in the server (one connection, one request), run at once "
            "instead of queued.",
            ["model"],
            registry=r,
        )
        self.pairs_truncated = Counter(
            f"{PREFIX}_pairs_truncated", "Pairs cut to the model's max_length.", ["model"], registry=r
        )
        self.pairs_dropped = Counter(
            f"{PREFIX}_pairs_dropped",
            "Queued pairs dropped before inference: reason=deadline (request deadline passed) or "
            "disconnect (the client went away).",
            ["model", "reason"],
            registry=r,
        )
        self.documents_chunked = Counter(
            f"{PREFIX}_documents_chunked",
            "Documents over max_length split into several windows (rank with chunking).",
            ["model"],
            registry=r,
        )
        self.chunks = Counter(
            f"{PREFIX}_document_chunks",
            "Windows scored for the documents counted in documents_chunked.",
            ["model"],
            registry=r,
        )
        self.rejected = Counter(
            f"{PREFIX}_requests_rejected",
            "Requests refused with 429: the model's queue was full, or would not reach them before their deadline.",
            ["model"],
            registry=r,
        )
        self.cache_lookups = Counter(
            f"{PREFIX}_cache_lookups",
            "Pairs looked up in the score cache (HASHRANK_CACHE_MB > 0), by result=hit|miss.",
            ["model", "result"],
            registry=r,
        )
        self.cache_entries = Gauge(
            f"{PREFIX}_cache_entries",
            "Pairs held in the score cache.",
            ["model"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.model_info = Gauge(
            f"{PREFIX}_model_info",
            "Served models (value 1).",
            ["model", "backend", "parameters", "max_length"],
            multiprocess_mode="max",
            registry=r,
        )

    def for_model(self, model: str) -> ModelMetrics:
        return ModelMetrics(
            tokenize_seconds=self.tokenize_seconds.labels(model),
            queue_seconds=self.queue_seconds.labels(model),
            inference_seconds=self.inference_seconds.labels(model),
            batch_pairs=self.batch_pairs.labels(model),
            batch_padded_tokens=self.batch_padded_tokens.labels(model),
            batch_padding_ratio=self.batch_padding_ratio.labels(model),
            batch_tokens=self.batch_tokens.labels(model),
            batch_failures=self.batch_failures.labels(model),
            queue_depth=self.queue_depth.labels(model),
            pairs_scored=self.pairs_scored.labels(model),
            direct_passes=self.direct_passes.labels(model),
            pairs_truncated=self.pairs_truncated.labels(model),
            dropped_deadline=self.pairs_dropped.labels(model, "deadline"),
            dropped_disconnect=self.pairs_dropped.labels(model, "disconnect"),
            rejected=self.rejected.labels(model),
            documents_chunked=self.documents_chunked.labels(model),
            chunks=self.chunks.labels(model),
            cache_hits=self.cache_lookups.labels(model, "hit"),
            cache_misses=self.cache_lookups.labels(model, "miss"),
            cache_entries=self.cache_entries.labels(model),
        )

    def render(self) -> bytes:
        """The exposition text: this registry, or every worker's files in multiprocess mode."""
        if multiprocess_dir() is None:
            return generate_latest(self.registry)
        forget_dead_workers()
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged)


@dataclass(frozen=True)
class ModelMetrics:
    """The children of one model's label, handed to its batcher and reranker."""

    tokenize_seconds: Histogram
    queue_seconds: Histogram
    inference_seconds: Histogram
    batch_pairs: Histogram
    batch_padded_tokens: Histogram
    batch_padding_ratio: Histogram
    batch_tokens: Counter
    batch_failures: Counter
    queue_depth: Gauge
    pairs_scored: Counter
    direct_passes: Counter
    pairs_truncated: Counter
    dropped_deadline: Counter
    dropped_disconnect: Counter
    rejected: Counter
    documents_chunked: Counter
    chunks: Counter
    cache_hits: Counter
    cache_misses: Counter
    cache_entries: Gauge


def forget_dead_workers() -> None:
    """mark_process_dead for workers that died without a shutdown (kill -9, OOM): uvicorn's supervisor
    replaces them, but their live gauges (in flight, queue depth) would stay in the sums forever."""
    directory = multiprocess_dir()
    if directory is None:
        return
    files = (re.search(r"_(\d+)\.db$", p.name) for p in Path(directory).glob("gauge_live*_*.db"))
    pids = {int(m.group(1)) for m in files if m}
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):  # another worker's /metrics got there first
                mark_process_dead(pid)
        except PermissionError:  # alive, another user's
            pass


def mark_process_dead(pid: int) -> None:
    """Forget a finished worker's live gauges (queue depth, in-flight) in multiprocess mode."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
