"""`hashrank serve [--port 8080] [--workers N] [--models name=path,...] ...`: run the HTTP service.

Every setting is a flag (`--max-batch-pairs 32`) and an environment variable (`HASHRANK_MAX_BATCH_PAIRS`);
flags win. With no arguments it serves the shipped models from models/ on 0.0.0.0:8080.

    $ hashrank serve --port 8080 --workers 2
    INFO:     Uvicorn running on http://0.0.0.0:8080 (Press CTRL+C to quit)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from app.settings import Settings

_ENV_PREFIX = "HASHRANK_"
_DEST_PREFIX = "setting_"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    parser: argparse.ArgumentParser = subparsers.add_parser("serve", help="serve /score and /rank over HTTP (uvicorn)")
    configure(parser)
    return parser


def configure(parser: argparse.ArgumentParser) -> None:
    # One flag per setting; dests are prefixed so they cannot clobber the top-level options (--log-level).
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        dest = _DEST_PREFIX + name
        env = _ENV_PREFIX + name.upper()
        if field.annotation is bool:
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=f"[{env}]")
        else:
            default = field.default if field.default_factory is None else field.default_factory()  # type: ignore[call-arg]
            parser.add_argument(flag, dest=dest, default=None, metavar="VALUE", help=f"[{env}] default: {default}")


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags; they win over HASHRANK_* variables."""
    values = vars(args).items()
    return {k.removeprefix(_DEST_PREFIX): v for k, v in values if k.startswith(_DEST_PREFIX) and v is not None}


def run(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from app.api.read_timeout import ReadTimeoutProtocol

    overrides = overrides_from(args)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"hashrank serve: invalid settings\n{exc}", file=sys.stderr)
        return 2
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "loop": "auto",  # uvloop when installed
        "timeout_graceful_shutdown": 30,
        # httptools (uvicorn[standard]) with a deadline on request heads (bodies: BodyLimit), and a cap on
        # open connections (503 beyond it).
        "http": ReadTimeoutProtocol,
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": settings.keep_alive_s,
        # Our access log (app/api/middleware.py RequestId) carries the request id; uvicorn's cannot.
        "access_log": False,
        "log_config": _log_config(settings),
    }
    if settings.server == "granian":
        return _run_granian(settings, overrides)
    if settings.workers == 1:
        from app.main import create_app

        uvicorn.run(create_app(settings), **options)
        return 0
    _hand_over(overrides, settings.workers)
    uvicorn.run("app.main:create_app", factory=True, workers=settings.workers, **options)
    return 0


def _hand_over(overrides: dict[str, Any], workers: int) -> None:
    """Worker processes build their own app from the environment: hand the flags over through it, and give
    several workers one metrics directory."""
    for name, value in overrides.items():
        os.environ[_ENV_PREFIX + name.upper()] = _env_value(Settings.model_fields[name].annotation, value)
    if workers > 1:
        _prepare_multiprocess_metrics()


def _run_granian(settings: Settings, overrides: dict[str, Any]) -> int:
    try:
        from granian import Granian
        from granian.constants import Interfaces, Loops
        from granian.http import HTTP1Settings
    except ImportError:
        print("hashrank serve: --server granian needs granian: pip install hashrank[granian]", file=sys.stderr)
        return 2
    _hand_over(overrides, settings.workers)
    Granian(
        "app.main:create_app",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        runtime_threads=1,  # one event loop thread per worker, as uvicorn; inference has its own thread
        loop=Loops.uvloop,
        log_level=settings.log_level if settings.log_level != "critical" else "error",  # type: ignore[arg-type]
        http1_settings=HTTP1Settings(header_read_timeout=int(settings.read_timeout_s * 1000)),
        backpressure=settings.max_connections,
        respawn_failed_workers=True,
        workers_kill_timeout=30,
    ).serve()
    return 0


def _log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's logging config plus the `hashrank.access` logger, printed like uvicorn's own lines, at the
    configured level (its lines are INFO: a higher level, or access_log false, silences it)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    level = settings.log_level.upper() if settings.access_log else "CRITICAL"
    config["loggers"]["hashrank.access"] = {"handlers": ["default"], "level": level, "propagate": False}
    return config


def _env_value(annotation: Any, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps({k: str(v) for k, v in value.items()})
    return str(value)


def _prepare_multiprocess_metrics() -> None:
    """Give the workers one directory of metric files, emptied of a previous run's, so /metrics in
    any worker reports the sum over all of them (prometheus-client multiprocess mode)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="hashrank-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
