"""examples/kubernetes: the manifests agree with each other and with what ragtrail really does.

The static tests parse the YAML and cross-check ports, names, settings and time budgets. The
last test runs the Deployment's container command, with the environment the pod would get
(ConfigMap, Secret, downward API), against a real PostgreSQL store and a real OTLP receiver,
and requests every probe path over HTTP as the kubelet would.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from examples_support import EXAMPLES, RunningApp, example_env, get_when, poll, read_spans
from waitress.task import ThreadedTaskDispatcher as TaskDispatcher  # type: ignore[import-untyped]

import ragtrail
from ragtrail import Settings
from ragtrail.demo import FakeOllama
from ragtrail.health import DEFAULT_PATHS

K8S = EXAMPLES / "kubernetes"
CONFIGURATION_DOC = EXAMPLES.parent / "docs" / "configuration.md"
# What the app's shutdown takes after the drain, at most: waitress gives its worker threads
# TaskDispatcher.shutdown's default timeout, then ragtrail.shutdown() flushes for its own.
SERVER_STOP_SECONDS = inspect.signature(TaskDispatcher.shutdown).parameters["timeout"].default
STORE_FLUSH_SECONDS = inspect.signature(ragtrail.shutdown).parameters["timeout"].default
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
Manifest = dict[str, Any]


def _manifests() -> dict[tuple[str, str], Manifest]:
    found: dict[tuple[str, str], Manifest] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                found[(document["kind"], document["metadata"]["name"])] = document
    return found


MANIFESTS = _manifests()
DEPLOYMENT = MANIFESTS[("Deployment", "rag-service")]
POD = DEPLOYMENT["spec"]["template"]["spec"]
(CONTAINER,) = POD["containers"]
CONFIG = MANIFESTS[("ConfigMap", "rag-service-ragtrail")]["data"]
SECRET = MANIFESTS[("Secret", "rag-service-secrets")]["stringData"]
COLLECTOR_DOCUMENTS = [document for document in yaml.safe_load_all(
    (K8S / "otel-collector.yaml").read_text(encoding="utf-8")) if document]


def _known_variables() -> set[str]:
    return {variable for f in dataclasses.fields(Settings) for variable in f.metadata["env"]}


def _documented_variables() -> set[str]:
    """Variables in the environment column of docs/configuration.md's settings tables."""
    documented: set[str] = set()
    for line in CONFIGURATION_DOC.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"`[a-z_]+`", cells[0]):
            documented.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[1]))
    return documented


def _port_number(container: Manifest, port: int | str) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_every_manifest_parses_into_the_expected_objects() -> None:
    """The five files hold the app's Deployment, Service, ConfigMap and Secret, and the
    collector's namespace (created first: a fresh cluster has none), ConfigMap, Deployment and
    Service."""
    assert set(MANIFESTS) == {
        ("Deployment", "rag-service"), ("Service", "rag-service"),
        ("ConfigMap", "rag-service-ragtrail"), ("Secret", "rag-service-secrets"),
        ("Namespace", "observability"), ("ConfigMap", "otel-collector"),
        ("Deployment", "otel-collector"), ("Service", "otel-collector")}
    namespaced = [d for d in COLLECTOR_DOCUMENTS if d["kind"] != "Namespace"]
    assert COLLECTOR_DOCUMENTS[0]["kind"] == "Namespace"
    assert {d["metadata"]["namespace"] for d in namespaced} == {"observability"}


def test_probes_the_container_port_and_the_service_target_are_one_port() -> None:
    """Every probe's port is the containerPort the app's --port opens, and the Service
    sends its traffic there, to the pods this Deployment labels."""
    container_ports = {p["containerPort"] for p in CONTAINER["ports"]}
    listen = int(_option(CONTAINER["command"], "--port"))
    assert container_ports == {listen}
    for probe in PROBES:
        assert _port_number(CONTAINER, CONTAINER[probe]["httpGet"]["port"]) == listen, probe
    service = MANIFESTS[("Service", "rag-service")]["spec"]
    assert [_port_number(CONTAINER, p["targetPort"]) for p in service["ports"]] == [listen]
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    assert DEPLOYMENT["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_liveness_and_startup_probe_liveness_and_readiness_probes_readiness() -> None:
    """Liveness and startup use a liveness route (never a dependency: a dependency outage
    must not restart pods), readiness a readiness route; timeouts leave room for a busy node
    and the startup window is longer than liveness's."""
    assert CONTAINER["livenessProbe"]["httpGet"]["path"] in DEFAULT_PATHS["live"]
    assert CONTAINER["startupProbe"]["httpGet"]["path"] in DEFAULT_PATHS["live"]
    assert CONTAINER["readinessProbe"]["httpGet"]["path"] in DEFAULT_PATHS["ready"]
    for probe in PROBES:
        assert CONTAINER[probe]["timeoutSeconds"] >= 1, probe
    startup, liveness = CONTAINER["startupProbe"], CONTAINER["livenessProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] > \
        liveness["periodSeconds"] * liveness["failureThreshold"]


def test_the_configmap_holds_only_documented_ragtrail_settings() -> None:
    """Every key is an environment variable a ragtrail setting reads, documented in
    docs/configuration.md, and Settings.from_env accepts the values."""
    variables = set(CONFIG)
    assert variables <= _known_variables(), variables - _known_variables()
    assert variables <= _documented_variables(), variables - _documented_variables()
    settings = Settings.from_env(CONFIG)
    assert settings.is_production
    assert settings.health_check_timeout < settings.health_check_interval
    # The app refuses uploads over 5 MiB itself; the middleware must let those through.
    assert settings.max_body_bytes > 5 * 1024 * 1024


_QUANTITY = re.compile(r"([0-9]+)(Ki|Mi|Gi|Ti)?")
_BINARY = {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def _bytes(quantity: str) -> int:
    """A Kubernetes quantity in bytes (the binary suffixes the example uses)."""
    match = _QUANTITY.fullmatch(quantity)
    assert match is not None, quantity
    return int(match[1]) * _BINARY[match[2]]


def test_the_quarantine_volume_outgrows_the_quarantines_bound() -> None:
    """The kubelet evicts the pod when an emptyDir passes its sizeLimit, so the quarantine's
    volume has one, above what the quarantine holds at its bounds: its bytes, a sidecar and a
    last block per file, and the uploads of every server thread being copied in."""
    settings = Settings.from_env(CONFIG)
    (mount,) = [m for m in CONTAINER["volumeMounts"]
                if m["mountPath"] == settings.quarantine_dir]
    (volume,) = [v for v in POD["volumes"] if v["name"] == mount["name"]]
    threads, upload, per_file = 8, 5 * 1024 * 1024, 8 * 1024  # app.py's --threads, its limit
    held = settings.quarantine_max_bytes + settings.quarantine_max_files * per_file \
        + threads * upload
    assert settings.quarantine_max_bytes > 0  # 0: no bound at all
    assert settings.quarantine_max_files > 0
    assert held < _bytes(volume["emptyDir"]["sizeLimit"])


def test_ragtrail_variables_set_in_the_deployment_are_settings_too() -> None:
    """RAGTRAIL_*/OTEL_* variables set on the container are settings ragtrail knows."""
    names = {e["name"] for e in CONTAINER["env"] if e["name"].startswith(("RAGTRAIL_", "OTEL_"))}
    assert names
    assert names <= _known_variables()
    assert names <= _documented_variables()
    assert not names & set(CONFIG), "set in both places: the container's env silently wins"


def test_env_references_only_expand_variables_defined_before_them() -> None:
    """Kubernetes expands $(VAR) only from envFrom and earlier env entries; a later one
    would be passed on literally."""
    defined = set(CONFIG)
    for entry in CONTAINER["env"]:
        for reference in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", entry.get("value", "")):
            assert reference in defined, f"{entry['name']} uses $({reference}) before it is set"
        defined.add(entry["name"])


def test_the_store_url_and_token_come_from_the_secret() -> None:
    """The store URL and API token are secretKeyRefs to keys the Secret has, and the store
    is PostgreSQL (one store shared by every replica)."""
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in CONTAINER["env"]
            if "secretKeyRef" in e.get("valueFrom", {})}
    assert set(refs) == {"RAGTRAIL_STORE_URL", "RAGTRAIL_API_TOKEN"}
    for ref in refs.values():
        assert ref["name"] == "rag-service-secrets"
        assert ref["key"] in SECRET
    assert SECRET[refs["RAGTRAIL_STORE_URL"]["key"]].startswith("postgresql+psycopg://")
    assert "RAGTRAIL_STORE_URL" not in CONFIG
    assert "RAGTRAIL_API_TOKEN" not in CONFIG


def test_the_shutdown_fits_in_the_grace_period() -> None:
    """preStop sleep, then the drain after SIGTERM, then the server's stop and the store's
    flush all end before the kubelet's SIGKILL; and the drain is long enough for a readiness
    probe to see it."""
    sleep = CONTAINER["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(_option(CONTAINER["command"], "--drain-seconds"))
    total = sleep + drain + SERVER_STOP_SECONDS + STORE_FLUSH_SECONDS
    assert total < POD["terminationGracePeriodSeconds"]
    assert drain >= CONTAINER["readinessProbe"]["periodSeconds"]


def test_the_otlp_endpoint_is_the_collectors_http_receiver() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT names the collector's Service, whose port leads to the
    container port the collector's OTLP/HTTP receiver listens on."""
    assert CONFIG["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    endpoint = urlsplit(CONFIG["OTEL_EXPORTER_OTLP_ENDPOINT"])
    service_name, namespace = (endpoint.hostname or "").split(".")[:2]
    service = MANIFESTS[("Service", service_name)]
    assert service["metadata"]["namespace"] == namespace
    (target,) = [p["targetPort"] for p in service["spec"]["ports"] if p["port"] == endpoint.port]
    (collector,) = MANIFESTS[("Deployment", service_name)]["spec"]["template"]["spec"][
        "containers"]
    config = yaml.safe_load(MANIFESTS[("ConfigMap", service_name)]["data"]["config.yaml"])
    receiver = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert int(receiver.rsplit(":", 1)[1]) == _port_number(collector, target)
    for pipeline in ("traces", "metrics"):
        assert "otlp" in config["service"]["pipelines"][pipeline]["receivers"]


# -- the container for real -----------------------------------------------------------------

@pytest.fixture
def otlp_receiver(tmp_path: Path) -> Iterator[Any]:
    """A real OTLP/HTTP receiver (the rotel collector) standing in for otel-collector."""
    from instrument.otlp_receivers import RotelReceiver

    (tmp_path / "rotel").mkdir()
    receiver = RotelReceiver(tmp_path / "rotel").start()
    try:
        yield receiver
    finally:
        receiver.stop()


def _pod_environment(tmp_path: Path, *, store_url: str, ollama_url: str,
                     otlp_endpoint: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it, cluster addresses replaced by
    local ones and volume mounts by directories under ``tmp_path``."""
    field_values = {"metadata.name": "rag-service-7f9c6-x2x4z", "metadata.namespace": "rag"}
    secrets = {"store-url": store_url, "api-token": "kubernetes-test-token"}
    local = {"OLLAMA_URL": ollama_url, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint}
    env = example_env(tmp_path)
    del env["RAGTRAIL_HEALTH_CHECK_INTERVAL"], env["RAGTRAIL_STORE_URL"]  # as configured
    env.update(CONFIG)
    for entry in CONTAINER["env"]:
        source = entry.get("valueFrom", {})
        if "fieldRef" in source:
            value = field_values[source["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in source:
            value = secrets[source["secretKeyRef"]["key"]]
        else:
            value = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], entry["value"])
        env[entry["name"]] = value
    env.update(local)
    for mount in CONTAINER["volumeMounts"]:
        for name, value in env.items():
            if value.startswith(mount["mountPath"]):
                env[name] = str(tmp_path / mount["name"]) + value[len(mount["mountPath"]):]
    return env


@pytest.mark.network
def test_the_containers_command_serves_every_probe_path(
        tmp_path: Path, postgres_db_url: str, otlp_receiver: Any,
        start_app: Callable[..., RunningApp]) -> None:
    """The Deployment's command, with the pod's environment and a PostgreSQL store: every
    probe path answers 200 over HTTP within its timeout with the probe's kind of health
    document; requests land in the shared store and, sampled, reach the OTLP receiver with
    the pod's resource attributes."""
    ollama = FakeOllama().start()
    try:
        env = _pod_environment(tmp_path, store_url=postgres_db_url, ollama_url=ollama.url,
                               otlp_endpoint=otlp_receiver.http_endpoint)
        command = list(CONTAINER["command"])
        command[command.index("--host") + 1] = "127.0.0.1"
        command[command.index("--port") + 1] = "0"  # the app prints the port it got
        # The image holds examples/flask_app in /srv/app.
        assert (command[:2], CONTAINER["workingDir"]) == (["python", "app.py"], "/srv/app")
        app = start_app([sys.executable, *command[1:]], env=env, cwd=EXAMPLES / "flask_app",
                        listening=r"serving on (http://127\.0\.0\.1:\d+)")
        with httpx.Client(base_url=app.url, timeout=10) as client:
            for probe in PROBES:
                spec = CONTAINER[probe]
                kind = "readiness" if probe == "readinessProbe" else "liveness"
                # Readiness is 503 until the first check results are in; the kubelet retries.
                reply = get_when(client, spec["httpGet"]["path"], timeout=20,
                                 headers={"User-Agent": "kube-probe/1.31"})
                assert reply.headers["content-type"] == "application/health+json"
                assert reply.json()["description"] == f"{kind} of rag-service"
                assert reply.elapsed.total_seconds() < spec["timeoutSeconds"], probe
            trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
            answer = client.get("/ask", params={"q": "What does a liveness probe check?"},
                                headers={"X-Request-ID": "k8s-test-0001", "traceparent":
                                         f"00-{trace_id}-00f067aa0ba902b7-01"})
        assert answer.status_code == 200
        assert poll(lambda: read_spans(postgres_db_url, "k8s-test-0001"), what="stored spans")
        from instrument.otlp_receivers import wait_for_spans

        (span,) = wait_for_spans(otlp_receiver, lambda s: s.name == "GET /ask", timeout=20)
        assert span.trace_id == trace_id
        assert span.resource is not None
        assert span.resource["k8s.pod.name"] == "rag-service-7f9c6-x2x4z"
        assert span.resource["service.name"] == "rag-service"
        assert app.stop(signal.SIGINT) == 0, app.output
    finally:
        ollama.stop()
