"""Security basics (issue 25 part 8) against the real server: the API key, error bodies that leak nothing,
X-Request-ID, CORS off unless configured, and no writes outside a tmp dir."""

from __future__ import annotations

import inspect
import os
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.api.middleware import ApiKey
from loadtest.servers import ROOT, Server, children
from tests.reliability.conftest import hashrank, log_text

# What a stack trace, a file path or a library name looks like in a body.
LEAKS = ("Traceback", 'File "', ".py", "/work", "/usr", "site-packages", "pydantic", "starlette", "fastapi")
LEAKS += ("uvicorn", "onnxruntime", "orjson", "tokenizers", "numpy", "Exception", "Error(")
BAD_REQUESTS: list[tuple[str, str, bytes, dict[str, str]]] = [
    (method, path, body, headers)
    for path in ("/score", "/rank", "/rerank", "/predict", "/v1/rerank", "/v2/rerank")
    for method, body, headers in [
        ("POST", b"{", {"content-type": "application/json"}),
        ("POST", b"\xff\xfe\x00", {"content-type": "application/json"}),
        ("POST", b"[]", {"content-type": "application/json"}),
        ("POST", b'{"model": "no", "query": "q", "documents": ["d"], "pairs": [["a", "b"]], "inputs": ["a", "b"]}', {}),
        ("POST", b'{"query": "\\ud800", "documents": ["\\udfff"], "pairs": [["\\ud800", "b"]]}', {}),
        ("POST", b'{"pairs": 5, "query": 5, "documents": 5, "texts": 5, "inputs": 5}', {}),
        ("GET", b"", {}),
        ("DELETE", b"", {}),
    ]
] + [("GET", "/nope/../../etc/passwd", b"", {}), ("GET", "/%00", b"", {})]


def test_error_bodies_leak_no_trace_path_or_library(client: httpx.Client) -> None:
    for method, path, body, headers in BAD_REQUESTS:
        r = client.request(method, path, content=body, headers=headers)
        assert 400 <= r.status_code < 500, (method, path, body, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json"), (path, r.headers)
        leaked = [word for word in LEAKS if word in r.text]
        assert not leaked, (method, path, body, r.text)


def test_request_id_accepted_or_generated_echoed_and_logged(server: Server, client: httpx.Client) -> None:
    mine = client.post("/score", json={"pairs": [["a", "b"]]}, headers={"X-Request-ID": "trace-7f3a"})
    assert mine.status_code == 200 and mine.headers["x-request-id"] == "trace-7f3a"
    cohere = client.post("/v1/rerank", json={"query": "q", "documents": ["d"]}, headers={"X-Request-ID": "co-1"})
    assert cohere.headers["x-request-id"] == "co-1" and cohere.json()["id"] == "co-1"
    generated = client.post("/rank", json={"query": "q", "documents": ["d"]})
    assert len(generated.headers["x-request-id"]) == 36  # a UUID
    junk = client.get("/health/live", headers={"X-Request-ID": "two words\tand a tab" + "x" * 200})
    assert " " not in junk.headers["x-request-id"] and len(junk.headers["x-request-id"]) == 36
    error = client.post("/score", content=b"{", headers={"X-Request-ID": "bad-body-1"})
    assert error.status_code == 422 and error.headers["x-request-id"] == "bad-body-1"
    deadline = time.monotonic() + 5
    while "request_id=bad-body-1" not in log_text(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    log = log_text(server)
    assert '"POST /score HTTP/1.1" 200' in log and "request_id=trace-7f3a" in log
    assert f"request_id={generated.headers['x-request-id']}" in log and "request_id=bad-body-1" in log


def test_cors_is_off_by_default(client: httpx.Client) -> None:
    origin = {"Origin": "https://evil.example"}
    preflight = client.options("/score", headers={**origin, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    simple = client.post("/score", json={"pairs": [["a", "b"]]}, headers=origin)
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    flags = ("--api-key", "s3cret-key", "--cors-origins", "https://app.example")
    with hashrank(tmp_path_factory.mktemp("keyed"), *flags, name="keyed") as s:
        yield s


def test_api_key_is_checked_in_constant_time(keyed: Server) -> None:
    # hmac.compare_digest's time does not depend on where the first differing byte is.
    assert "hmac.compare_digest" in inspect.getsource(ApiKey._authorised)
    with httpx.Client(base_url=keyed.url, timeout=30) as c:
        pair = {"pairs": [["a", "b"]]}
        assert c.post("/score", json=pair, headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
        assert c.post("/score", json=pair, headers={"Authorization": "bearer s3cret-key"}).status_code == 200
        for wrong in ("Bearer s3cret-kez", "Bearer s3cret-key2", "Bearer", "s3cret-key", "Basic s3cret-key"):
            r = c.post("/score", json=pair, headers={"Authorization": wrong})
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", wrong
        assert c.post("/v2/rerank", json={"query": "q", "documents": ["d"]}).json() == {
            "message": "missing or wrong API key: send the header `Authorization: Bearer <key>`"
        }
        assert c.get("/health/ready").status_code == 200 and c.get("/metrics").status_code == 200


def test_cors_when_configured_allows_only_that_origin(keyed: Server) -> None:
    with httpx.Client(base_url=keyed.url, timeout=30) as c:
        ok = c.options("/score", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
        other = c.options("/score", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers


def snapshot(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime) for p in sorted(root.rglob("*"))}


def writable_files(pid: int) -> set[str]:
    """Regular files a process holds open for writing, from /proc/<pid>/fd and fdinfo flags."""
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
            flags = int((Path(f"/proc/{pid}/fdinfo") / fd.name).read_text().split("flags:")[1].split()[0], 8)
        except (OSError, IndexError, ValueError):
            continue
        if target.startswith("/") and flags & (os.O_WRONLY | os.O_RDWR) and Path(target).is_file():
            out.add(target)
    return out


def test_serves_from_read_only_models_and_writes_only_in_its_tmp_dir(tmp_path: Path) -> None:
    """As the image runs it: models read-only (root-owned there; chmod a-w here, which binds a non-root
    user), `--workers 2` (the metrics dir is the only writable place besides TMPDIR). Checked by what the
    processes hold open for writing and by the model files being untouched."""
    models, scratch = tmp_path / "models", tmp_path / "tmp"
    for name in ("sts-hash-nano", "rerank-hash-nano"):
        shutil.copytree(ROOT / "models" / name, models / name)
    scratch.mkdir()
    for path in (*models.rglob("*"), models):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = snapshot(models)
    env = {
        "HASHRANK_MODEL_DIR": str(models),
        "PROMETHEUS_MULTIPROC_DIR": str(scratch / "metrics"),
        "TMPDIR": str(scratch),
        "HOME": str(scratch),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    try:
        with hashrank(tmp_path, "--workers", "2", env=env, name="read-only") as server:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                for _ in range(10):
                    assert c.post("/score", json={"pairs": [["a", "b"]]}).status_code == 200
                    assert c.post("/rank", json={"query": "q", "documents": ["d", "e"]}).status_code == 200
                assert "hashrank_pairs_scored_total" in c.get("/metrics").text
            assert server.proc is not None
            held = set().union(*(writable_files(pid) for pid in [server.proc.pid, *children(server.proc.pid)]))
            log = log_text(server)
        outside = {f for f in held if not f.startswith((str(scratch), str(tmp_path / "read-only.log")))}
        assert not outside, outside
        assert snapshot(models) == before
        assert "Permission denied" not in log and "Read-only" not in log
        assert list((scratch / "metrics").glob("*.db")), "the workers wrote no metrics"
    finally:
        for path in (models, *models.rglob("*")):
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
