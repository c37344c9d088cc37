"""The reliability suite's servers: `hashrank serve` as a subprocess on 127.0.0.1 (a free port), the shipped
models, started and stopped by loadtest.servers.Server; every test drives it with real clients."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.servers import ROOT, Server, free_port


@contextlib.contextmanager
def hashrank(log_dir: Path, *flags: str, env: dict[str, str] | None = None, name: str = "hashrank") -> Iterator[Server]:
    """`hashrank serve` with the shipped models (both, as the serving install serves them) on one thread;
    `flags` add to or override the defaults (flags win over HASHRANK_* variables)."""
    port = free_port()
    cmd = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port), "--threads", "1", *flags]
    with Server(name, cmd, port, env={"PYTHONPATH": str(ROOT), **(env or {})}, log_path=log_dir / f"{name}.log") as s:
        yield s


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One default server for the tests that do not change its settings or kill it."""
    with hashrank(tmp_path_factory.mktemp("server")) as s:
        yield s


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def log_text(server: Server) -> str:
    assert server.log_path is not None
    return server.log_path.read_text(errors="replace")
