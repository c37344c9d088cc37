"""Start a server as a pinned subprocess on 127.0.0.1, time it to ready, read its RSS, stop it."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    """Prefix `taskset -c CPUS` when taskset exists (Linux); elsewhere run unpinned."""
    if cpus is None or shutil.which("taskset") is None:
        return cmd
    return ["taskset", "-c", cpus, *cmd]


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of one process in MB, from /proc; (0, 0) when unreadable."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in values:
                values[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return values["VmRSS"], values["VmHWM"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used, from /proc/<pid>/stat; 0.0 when unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def children(pid: int) -> list[int]:
    """Direct and indirect child pids (uvicorn's worker processes), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@dataclass
class Server:
    """A server subprocess; `with Server(...) as s:` starts it, waits for ready, and stops it after."""

    name: str
    cmd: list[str]
    port: int
    cpus: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    ready_path: str = "/health/ready"
    ready_timeout: float = 120.0
    ready_seconds: float = 0.0  # from spawn to the first 200 on ready_path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        log = open(self.log_path or os.devnull, "wb")  # noqa: SIM115  (closed in __exit__ via the process)
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            pinned(self.cmd, self.cpus), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()  # the child holds its own descriptor
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before ready; see {self.log_path}")
            if time.perf_counter() - start > self.ready_timeout:
                self.stop()
                raise RuntimeError(f"{self.name} not ready after {self.ready_timeout}s; see {self.log_path}")
            if self._ready():
                self.ready_seconds = time.perf_counter() - start
                return self
            time.sleep(0.02)

    def _ready(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", self.ready_path)
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def processes(self) -> list[tuple[int, str, float, float, float]]:
        """(pid, role, RSS MB, peak RSS MB, CPU s) of the server's processes: one "worker", or a "supervisor"
        with its "worker"s (and multiprocessing "helper"s such as the resource tracker)."""
        assert self.proc is not None
        # taskset execs the command, so proc.pid is the server itself.
        kids = children(self.proc.pid)
        out = [(self.proc.pid, "supervisor" if kids else "worker", *rss_mb(self.proc.pid), cpu_seconds(self.proc.pid))]
        for pid in kids:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            role = "helper" if "resource_tracker" in cmdline or "semaphore_tracker" in cmdline else "worker"
            out.append((pid, role, *rss_mb(pid), cpu_seconds(pid)))
        return out

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # the session we started: the server and its workers only
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def __exit__(self, *exc: object) -> None:
        self.stop()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
