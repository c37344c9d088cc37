"""Render every kustomization under deploy/kubernetes and validate each object offline (`make lint` runs this).

Built-in kinds go through kubernetes-validate (strict: unknown fields fail) against KUBERNETES_VERSION; custom
resources (KEDA, Prometheus Operator) against the JSON schemas vendored in schemas/ (their sources: schemas/SOURCE.md).
An object of a group with no schema here fails, so a new CRD kind cannot slip through unvalidated.

    $ python deploy/kubernetes/validate.py
    base: 6 objects valid (Kubernetes 1.32.0, CRDs: schemas/)
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

HERE = Path(__file__).resolve().parent
# The oldest Kubernetes still in upstream support when this was written; every field used exists there.
KUBERNETES_VERSION = "1.32.0"
KUSTOMIZATIONS = ("base", "overlays/example", "overlays/keda")
CRD_GROUPS = ("keda.sh", "monitoring.coreos.com")


def render(kustomization: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR` as a list of objects."""
    out = subprocess.run(["kubectl", "kustomize", str(kustomization)], capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def crd_schema(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The vendored schema of a custom resource (schemas/<group>/<kind>_<version>.json), None for built-in kinds."""
    group, _, version = str(obj["apiVersion"]).rpartition("/")
    if group not in CRD_GROUPS:
        return None
    path = HERE / "schemas" / group / f"{str(obj['kind']).lower()}_{version}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{obj['kind']} {obj['apiVersion']}: no schema at {path.relative_to(HERE)}")
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def problems(obj: dict[str, Any]) -> Iterator[str]:
    """Why obj is invalid, one message per problem (none when it is valid)."""
    schema = crd_schema(obj)
    if schema is None:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            yield f"{'.'.join(map(str, exc.path)) or '<root>'}: {exc.message}"
        return
    for error in jsonschema.Draft7Validator(schema).iter_errors(obj):
        yield f"{'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"


def validate(kustomization: str) -> list[str]:
    failures = []
    objects = render(HERE / kustomization)
    for obj in objects:
        name = f"{kustomization}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        failures += [f"{name}: {problem}" for problem in problems(obj)]
    if not failures:
        print(f"{kustomization}: {len(objects)} objects valid (Kubernetes {KUBERNETES_VERSION}, CRDs: schemas/)")
    return failures


def main() -> int:
    failures = [failure for kustomization in KUSTOMIZATIONS for failure in validate(kustomization)]
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
