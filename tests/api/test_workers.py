"""`hashrank serve --workers 2`: a real process tree; /metrics from any worker sums all of them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import metric

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_workers_share_one_metrics_view(sts_model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHRANK_")}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    command += ["--models", f"sts={sts_model_dir}", "--threads", "1", "--no-warmup", "--log-level", "warning"]
    server = subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 90
            while True:
                assert server.poll() is None, "hashrank serve exited"
                assert time.monotonic() < deadline, "hashrank serve never became ready"
                try:
                    if client.get("/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            for _ in range(30):  # new connections: spread over both workers by the kernel
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as fresh:
                    assert fresh.post("/score", json={"pairs": [["a", "b"]]}).status_code == 200
            text = client.get("/metrics").text
            assert metric(text, "hashrank_pairs_scored_total", model="sts") == 30
            assert metric(text, "hashrank_requests_total", route="/score", status="200", model="sts") == 30
            assert len(list(tmp_path.glob("*.db"))) >= 2, "only one worker wrote metrics"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
