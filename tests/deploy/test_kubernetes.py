"""The wiring of deploy/kubernetes that schemas cannot check (`make lint` validates the objects themselves).

Every rendered kustomization is checked against the real app: its probe and scrape paths answer on the real
app with the shipped models, its ports are the port the app is configured to listen on, every hashrank_* series
that the HPA, the adapter, KEDA and the alerts read (with the labels they select on) is in the app's /metrics, the
grace period covers the drain the code does, and the threads match the CPU request.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from prometheus_client.parser import text_string_to_metric_families

from app.__main__ import build_parser
from app.batching import DynamicBatcher
from app.commands import serve
from app.settings import Settings
from deploy.kubernetes.validate import HERE, KUSTOMIZATIONS, render
from tests.api.conftest import running
from tests.conftest import MODELS_DIR, ROOT

RENDERED = {name: render(HERE / name) for name in KUSTOMIZATIONS}
SERIES = re.compile(r"\b(hashrank_[a-z_]+)(\{[^}]*\})?")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
# Labels Prometheus adds when it scrapes a pod (target labels), not the app.
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "endpoint", "container"}


def objects(kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, rendered in RENDERED.items():
        for obj in rendered:
            if obj["kind"] == kind:
                yield name, obj


def the(kind: str, kustomization: str = "base") -> dict[str, Any]:
    (obj,) = [o for name, o in objects(kind) if name == kustomization]
    return obj


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(c)


def literal_env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c["env"] if "value" in e}


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every query the manifests and the adapter rule read."""
    for name, rule in objects("PrometheusRule"):
        for group in rule["spec"]["groups"]:
            for r in group["rules"]:
                yield f"{name} alert {r['alert']}", r["expr"]
    for name, scaled in objects("ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            if trigger["type"] == "prometheus":
                yield f"{name} KEDA trigger", trigger["metadata"]["query"]
    for rule in adapter_rules():
        yield "prometheus-adapter seriesQuery", rule["seriesQuery"]
    for name, hpa in objects("HorizontalPodAutoscaler"):
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Pods":
                yield f"{name} HPA", metric["pods"]["metric"]["name"]


def adapter_rules() -> list[dict[str, Any]]:
    values = yaml.safe_load((HERE / "prometheus-adapter" / "values.yaml").read_text(encoding="utf-8"))
    rules: list[dict[str, Any]] = values["rules"]["custom"]
    return rules


@pytest.fixture()
def pod_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings from the Deployment's environment, as the container builds them (the image's model directory
    holds the same two shipped models as the checkout's)."""
    env = literal_env(container(the("Deployment")))
    for name, value in {**env, "HASHRANK_MODEL_DIR": str(MODELS_DIR)}.items():
        monkeypatch.setenv(name, value)
    return Settings()


@pytest.fixture(scope="module")
def kinds() -> set[str]:
    return {obj["kind"] for rendered in RENDERED.values() for obj in rendered}


def test_every_overlay_renders_the_serving_objects(kinds: set[str]) -> None:
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ScaledObject"} <= kinds
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    # KEDA owns its HPA: the KEDA overlay must not also ship the base's.
    assert not [o for name, o in objects("HorizontalPodAutoscaler") if name == "overlays/keda"]


async def test_probes_and_scrape_path_answer_on_the_real_app(pod_settings: Settings) -> None:
    c = container(the("Deployment"))
    paths = {probe: c[probe]["httpGet"]["path"] for probe in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert paths["readinessProbe"] == "/health/ready" and paths["livenessProbe"] == "/health/live"
    (endpoint,) = the("ServiceMonitor")["spec"]["endpoints"]
    async with running(pod_settings) as (_, client):
        for path in [*paths.values(), endpoint["path"]]:
            assert (await client.get(path)).status_code == 200, path


def test_ports_match_the_port_the_app_listens_on(pod_settings: Settings) -> None:
    for name, deployment in objects("Deployment"):
        c = container(deployment)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"http": pod_settings.port}, name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["port"] in ports, (name, probe)
    for name, service in objects("Service"):
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] in ports, name
        (monitor,) = [o for n, o in objects("ServiceMonitor") if n == name]
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port["name"]], name
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items(), name


def test_the_pod_runs_the_image_as_the_dockerfile_builds_it(pod_settings: Settings) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for name, deployment in objects("Deployment"):
        c = container(deployment)
        assert f"USER {deployment['spec']['template']['spec']['securityContext']['runAsUser']}" in dockerfile, name
        assert f"EXPOSE {pod_settings.port}" in dockerfile
        assert 'ENTRYPOINT ["hashrank"]' in dockerfile and build_parser().parse_args(c["args"]).command == "serve"
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        (tmp,) = [m["name"] for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert "emptyDir" in volumes[tmp], name


def test_threads_equal_the_cpu_request_and_one_worker(pod_settings: Settings) -> None:
    for name, deployment in objects("Deployment"):
        resources = container(deployment)["resources"]
        assert resources["requests"]["cpu"] == resources["limits"]["cpu"], name
        assert pod_settings.resolved_threads() == cpu_cores(resources["requests"]["cpu"]), name
        assert pod_settings.workers == 1, name


def test_grace_period_exceeds_prestop_plus_the_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    # What `hashrank serve` hands uvicorn: run the real command with uvicorn.run recording its options.
    options: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: options.update(kw))
    monkeypatch.setenv("HASHRANK_MODEL_DIR", str(MODELS_DIR))
    assert serve.run(build_parser().parse_args(["serve"])) == 0
    graceful_s = options["timeout_graceful_shutdown"]
    queue_drain_s = inspect.signature(DynamicBatcher.stop).parameters["drain_timeout_s"].default
    for name, deployment in objects("Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        command = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep", name
        # The grace period runs from the preStop hook's start; SIGTERM comes after the hook.
        assert spec["terminationGracePeriodSeconds"] > float(command[1]) + graceful_s + queue_drain_s, name


async def test_every_series_the_autoscalers_and_alerts_read_is_exported(pod_settings: Settings) -> None:
    async with running(pod_settings) as (_, client):
        # One request per route, so every labelled family has a child (histogram buckets, status labels).
        assert (await client.post("/score", json={"pairs": [["a cat", "a dog"]]})).status_code == 200
        assert (await client.post("/rank", json={"query": "q", "documents": ["d1", "d2"]})).status_code == 200
        exposition = (await client.get("/metrics")).text
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    read = list(queries())
    assert len(read) >= 8  # 5 alerts, KEDA, adapter, HPA
    for where, query in read:
        for series, matchers in SERIES.findall(query):
            assert series in exported, f"{where} reads {series}, which the app does not export"
            labels = set(MATCHER_LABEL.findall(matchers)) - TARGET_LABELS
            assert labels <= exported[series], f"{where}: {series} has no label {labels - exported[series]}"
    # The queue alerts and the HPA name the queue metric with its model label.
    assert "model" in exported["hashrank_queue_depth_pairs"]


def test_autoscalers_read_one_metric_with_one_target(pod_settings: Settings) -> None:
    (rule,) = adapter_rules()
    assert rule["name"]["as"] == "hashrank_queue_depth_pairs" and "hashrank_queue_depth_pairs" in rule["seriesQuery"]
    hpa_metric = the("HorizontalPodAutoscaler")["spec"]["metrics"][0]["pods"]
    assert hpa_metric["metric"]["name"] == rule["name"]["as"]
    target = float(hpa_metric["target"]["averageValue"])
    assert target < pod_settings.max_queue_pairs / 4  # scale out long before a pod answers 429
    scaled = the("ScaledObject", "overlays/keda")
    (prometheus,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    assert prometheus["metricType"] == "AverageValue" and float(prometheus["metadata"]["threshold"]) == target
    assert f'namespace="{scaled["metadata"]["namespace"]}"' in prometheus["metadata"]["query"]
    assert "hashrank_queue_depth_pairs" in prometheus["metadata"]["query"]


def test_queue_alert_fires_at_half_the_queue_limit(pod_settings: Settings) -> None:
    rules = {r["alert"]: r for g in the("PrometheusRule")["spec"]["groups"] for r in g["rules"]}
    assert {"HashrankQueueSaturated", "HashrankRejectingRequests", "HashrankHighLatencyP99"} <= set(rules)
    assert {"HashrankPodsNotReady", "HashrankUnavailable"} <= set(rules)
    threshold = float(rules["HashrankQueueSaturated"]["expr"].rsplit(">", 1)[1])
    assert threshold == pod_settings.max_queue_pairs / 2
    assert 'status="429"' in rules["HashrankRejectingRequests"]["expr"]


def test_readme_documents_the_kustomizations() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in KUSTOMIZATIONS:
        if name.startswith("overlays/"):
            assert f"kubectl apply -k deploy/kubernetes/{name}" in readme
    assert Path(HERE / "schemas" / "SOURCE.md").is_file()
