"""docs/clients.md: every Python snippet runs against a real uvicorn (localhost:8080 swapped for its
port), and every curl body is accepted, so the README's "use it from …" section cannot rot."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow
DOC = Path(__file__).resolve().parents[2] / "docs" / "clients.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
REQUIRES = {
    "cohere": "cohere",
    "langchain_cohere": "langchain_cohere",
    "llama_index": "llama_index.core",
    "jinaai_rerank": "llama_index.postprocessor.jinaai_rerank",
    "cohere_rerank": "llama_index.postprocessor.cohere_rerank",
    "haystack": "haystack_integrations.components.rankers.huggingface_api",
}


def blocks(language: str) -> list[str]:
    return [code for lang, code in BLOCK.findall(DOC.read_text(encoding="utf-8")) if lang == language]


@pytest.mark.parametrize("snippet", blocks("python"), ids=lambda s: s.split("\n")[0][:40])
def test_python_snippets_run(snippet: str, server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    for marker, module in REQUIRES.items():
        if marker in snippet:
            pytest.importorskip(module)
    exec(compile(snippet.replace("http://localhost:8080", server_url), str(DOC), "exec"), {})  # noqa: S102


def test_curl_snippets_are_accepted(server_url: str) -> None:
    commands = [c for block in blocks("bash") for c in block.replace("\\\n", " ").splitlines() if "curl" in c]
    posts = [c for c in commands if " -d " in c]
    assert len(posts) >= 3
    for command in commands:
        args = shlex.split(command.split("curl", 1)[1])
        url = next(a for a in args if a.startswith("localhost:8080"))
        data = args[args.index("-d") + 1] if "-d" in args else None
        target = server_url + url.removeprefix("localhost:8080")
        r = httpx.post(target, json=json.loads(data)) if data else httpx.get(target)
        assert r.status_code == 200, (command, r.text)
