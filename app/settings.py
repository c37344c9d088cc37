"""Settings: the only place the environment is read. `Settings()` reads `HASHRANK_*` variables;
`hashrank serve` flags override them; `create_app(settings)` receives the result explicitly.

    >>> Settings(models="sts=models/sts-hash-nano").models
    {'sts': PosixPath('models/sts-hash-nano')}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Backend = Literal["onnx", "onnx-int8", "torch"]
# The model directories served when HASHRANK_MODELS is not set, in order of preference for /score.
DEFAULT_MODEL_NAMES = ("sts-hash-nano", "rerank-hash-nano")
BATCH_PAIRS_PER_THREAD = 16  # the default max_batch_pairs per intra-op thread (see max_batch_pairs)
MAX_AUTO_BATCH_PAIRS = 32
# A checkout keeps models/ next to app/; an installed wheel does not, and the image sets HASHRANK_MODEL_DIR.
_CHECKOUT_MODELS = Path(__file__).resolve().parents[1] / "models"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HASHRANK_", extra="ignore", validate_default=True)

    # name -> model directory. Env: `sts=models/sts-hash-nano,rerank=models/rerank-hash-nano`, a JSON
    # object, or bare paths (named after their directory). Empty: serve whichever of DEFAULT_MODEL_NAMES
    # exists under model_dir.
    models: Annotated[dict[str, Path], NoDecode] = Field(default_factory=dict)
    # Where relative model paths and the default models are looked up. None: the checkout's models/
    # when running from the repository, else ./models (the image sets /app/models).
    model_dir: Path | None = None
    # Model used when a request names none; None: the first configured model (sts-hash-nano by default).
    default_score_model: str | None = None
    # None: a model whose name contains "rerank" if one is served, else the /score default.
    default_rank_model: str | None = None

    # onnx-int8 (model.int8.onnx: int8 weights, activation scales fixed at export, so a pair's score does not
    # depend on its batch-mates) is the default: 1.1-1.8x faster than fp32 depending on the CPU (VNNI helps
    # most), STS-B test Spearman 0.001 and WikiQA test MAP 0.004 below it. onnx serves model.onnx (fp32);
    # torch needs the [torch] extra and exists for parity checks.
    backend: Backend = "onnx-int8"
    # Intra-op threads of each model's inference session. None: the cores divided among the workers, at
    # most 4 (more threads than cores only adds contention, and the tokenizer pool needs CPU too).
    threads: PositiveInt | None = None
    # Threads that tokenize requests off the event loop, overlapping the running forward pass.
    tokenize_threads: PositiveInt = 2
    # Tokens per pair; None keeps each model's own max_length. Lower is faster, cuts long documents.
    max_length: PositiveInt | None = None

    # Padded-token budget of one forward pass (max pair length x pairs). It bounds memory and the
    # latency of a batch; 32 x 128 keeps a full batch of typical pairs in one pass.
    max_batch_tokens: Annotated[int, Field(ge=16)] = 32 * 128
    # Pairs per forward pass. None: 16 per intra-op thread, at most 32. One thread runs batches of 16 as fast
    # as 32 or faster (1.00-1.10x, AMD EPYC, int8 and fp32) at ~50 MB less peak RSS under load (226 -> 177 MB);
    # two threads split a batch of 32 better (16 lost 4-15%). loadtest/README.md has the A/B.
    max_batch_pairs: PositiveInt | None = None
    # Largest share of padding in a batch (0 = only equal lengths together, 1 = no cap). On CPU a pass
    # costs about the same per padded token at any batch size, so a mixed queue runs as a few
    # length-homogeneous batches rather than one padded batch.
    max_padding_ratio: Annotated[float, Field(ge=0, le=1)] = 0.25
    # How long an idle batcher waits for more requests before running a partial batch. Never applied
    # while a batch is running: arrivals during a forward pass form the next batch at once.
    # 0 by default: continuous batching already coalesces under load, and on a CPU one more forward pass
    # costs about the same per token, so the wait only adds latency (1-pair /score at c=1: p50 2.6 -> 1.8 ms,
    # 1.44x requests/s; at c=32 within 5%; loadtest/README.md).
    max_wait_ms: NonNegativeFloat = 0.0
    # Pairs waiting in one model's queue; beyond it requests get 429 with Retry-After at once.
    max_queue_pairs: PositiveInt = 4096
    # Pairs (or documents) per request; more is 413. Cohere recommends at most 1,000 documents.
    max_pairs_per_request: PositiveInt = 1000
    # Request body bytes; a larger body is refused with 413 before it is parsed.
    max_request_bytes: PositiveInt = 4 * 1024 * 1024
    # Deadline of a request that sends no timeout_ms; a request may ask for up to max_timeout_ms.
    timeout_ms: PositiveInt = 30_000
    max_timeout_ms: PositiveInt = 600_000
    # Run a few batch shapes through each model before reporting ready.
    warmup: bool = True
    # Memory (MiB) of each model's LRU of pair -> score: a pair seen again (the same query and document, e.g.
    # a paginated or repeated search) skips tokenizing and the forward pass. ~2,600 pairs per MiB; 0 = off.
    cache_mb: NonNegativeInt = 0
    # When set, every route but /health/* and /metrics needs `Authorization: Bearer <key>` (what the Cohere,
    # Jina and TEI clients send); anything else gets 401. Empty: no authentication.
    api_key: SecretStr | None = None
    # Seconds a client may take to send a request's head, and then its body; slower ones get 408 and are
    # disconnected (a stalled connection holds a descriptor and, once its head is in, a request slot). 10 s
    # passes a 4 MB body at 400 KB/s.
    read_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    # Open connections (or requests in progress) per worker; beyond it uvicorn answers 503 and closes.
    # Above 1,000 so that a burst of stalled clients, cut by read_timeout_s, leaves room for real ones.
    max_connections: PositiveInt = 2048
    # Seconds an idle keep-alive connection stays open. Longer than clients' pooled-connection idle times (and
    # uvicorn's 5 s default): a client that reuses a connection the server is closing loses that request
    # (seen in the overload run: 206 of 23,435 requests). Idle connections count in max_connections.
    keep_alive_s: Annotated[float, Field(gt=0)] = 75.0
    # Comma-separated origins a browser may call the API from (CORS), or "*". Empty: no CORS headers, so
    # browsers refuse cross-origin calls.
    cors_origins: str = ""

    host: str = "0.0.0.0"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    # uvicorn worker processes, each loading every model; /metrics aggregates them (multiprocess mode).
    workers: PositiveInt = 1
    # The HTTP server. uvicorn is the default and what the reliability suite proves. granian (the [granian]
    # extra, a Rust HTTP server) costs less per request: ~1.6x the 1-pair /score throughput at 32 concurrent
    # clients on one core; its head-read timeout is its own (read_timeout_s), max_connections maps to its
    # backpressure, and it writes no access log.
    server: Literal["uvicorn", "granian"] = "uvicorn"
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # One access-log line per request at INFO (client, request line, status, ms, request id): written only when
    # log_level is info or debug, and not at all with access_log false.
    access_log: bool = True
    # Path prefix when served behind a proxy that strips it (OpenAPI links use it).
    root_path: str = ""

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text:
            return {}
        if text.startswith("{"):
            return json.loads(text)
        out: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, path = part.partition("=")
            if not sep:
                name, path = Path(part).name, part
            if not name.strip() or not path.strip():
                raise ValueError(f"bad model entry {part!r}; expected name=path")
            out[name.strip()] = path.strip()
        return out

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.max_pairs_per_request > self.max_queue_pairs:
            raise ValueError(
                f"max_pairs_per_request ({self.max_pairs_per_request}) exceeds max_queue_pairs "
                f"({self.max_queue_pairs}): such a request could never be queued"
            )
        if self.timeout_ms > self.max_timeout_ms:
            raise ValueError(f"timeout_ms ({self.timeout_ms}) exceeds max_timeout_ms ({self.max_timeout_ms})")
        for field in ("default_score_model", "default_rank_model"):
            name = getattr(self, field)
            if name is not None and self.models and name not in self.models:
                raise ValueError(f"{field} {name!r} is not one of the configured models {sorted(self.models)}")
        return self

    # ---- derived values ----

    def resolved_model_dir(self) -> Path:
        if self.model_dir is not None:
            return self.model_dir
        if _CHECKOUT_MODELS.is_dir():
            return _CHECKOUT_MODELS
        return Path.cwd() / "models"

    def resolved_models(self) -> dict[str, Path]:
        """name -> absolute model directory; the defaults that exist when `models` is empty."""
        root = self.resolved_model_dir()
        if not self.models:
            return {name: root / name for name in DEFAULT_MODEL_NAMES if (root / name).is_dir()}
        return {name: _resolve(path, root) for name, path in self.models.items()}

    def resolved_threads(self) -> int:
        return self.threads or max(1, min(4, usable_cpus() // self.workers))

    def resolved_max_batch_pairs(self) -> int:
        return self.max_batch_pairs or min(MAX_AUTO_BATCH_PAIRS, BATCH_PAIRS_PER_THREAD * self.resolved_threads())

    def default_models(self, names: list[str]) -> tuple[str, str]:
        """(score default, rank default) among the served model names."""
        score = self.default_score_model or names[0]
        rerankers = [n for n in names if "rerank" in n]
        rank = self.default_rank_model or (rerankers[0] if rerankers else score)
        return score, rank


def _resolve(path: Path, root: Path) -> Path:
    if path.is_absolute():
        return path
    # "models/x" given from the repository root, or "x" relative to the models directory.
    for candidate in (Path.cwd() / path, root / path, root.parent / path):
        if candidate.is_dir():
            return candidate.resolve()
    # Not there: name the path the user most likely meant in the load error.
    return (root.parent if path.parts[0] == root.name else root) / path


def usable_cpus() -> int:
    """CPUs this process may run on (taskset, cpusets), not the machine's count: a worker pinned to one
    core with two ORT threads would time-slice them."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
