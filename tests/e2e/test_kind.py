"""End to end on a kind cluster: the chart, the operator, a tenant, runs and a cancel.

Needs:
- a cluster the current kubeconfig reaches (KUBECONFIG or ~/.kube/config), e.g.
  `kind create cluster`;
- DATA_EXPLORER_E2E_IMAGE: an image built from runner_image/Dockerfile and loaded into
  the cluster with a tag other than latest (`kind load docker-image data-explorer:e2e`);
  every role runs from it, the CommCare simulator included.

Optional:
- DATA_EXPLORER_E2E_DATABASE_URL: a PostgreSQL the pods reach; without it a PostgreSQL
  pod (DATA_EXPLORER_E2E_POSTGRES_IMAGE, default postgres:16) runs in the test namespace.
- DATA_EXPLORER_E2E_POSTGRES_CIDRS, DATA_EXPLORER_E2E_NETWORK_POLICIES: see
  e2e_helpers.chart_values, which builds the install values (test_e2e_values.py renders
  them offline).

Without a cluster or without DATA_EXPLORER_E2E_IMAGE the whole module is skipped.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from typing import Any, Callable

import pytest

pytestmark = pytest.mark.e2e

IMAGE = os.environ.get("DATA_EXPLORER_E2E_IMAGE", "")
if not IMAGE:
    pytest.skip(
        "DATA_EXPLORER_E2E_IMAGE is not set: build runner_image/Dockerfile, load it into the kind "
        "cluster and set it to that image reference",
        allow_module_level=True,
    )

from kubernetes import client, config, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402
from kubernetes.config.config_exception import ConfigException  # noqa: E402

try:
    config.load_kube_config()
except (ConfigException, OSError) as exc:
    pytest.skip(f"no usable kubeconfig (KUBECONFIG or ~/.kube/config): {exc}", allow_module_level=True)
_probe = client.Configuration.get_default_copy()
_probe.retries = 0  # one attempt: "within 3 s" means 3 s, not 3 s per retry
try:
    with client.ApiClient(_probe) as _api:
        client.VersionApi(_api).get_code(_request_timeout=3)
except ApiException:
    pass  # it answered (if only to refuse): the install below will say what is wrong
except Exception as exc:  # no answer at all means there is no cluster to test
    host = _probe.host
    pytest.skip(f"the Kubernetes API at {host} did not answer within 3 s: {type(exc).__name__}", allow_module_level=True)

import helm_python as helm  # noqa: E402
from e2e_helpers import CHART_DIR, RELEASE, SIMULATOR_PORT, chart_values  # noqa: E402

GROUP, VERSION = "dataexplorer.io", "v1alpha1"
SIM_USER, SIM_KEY = "demo@example.org", "demo-api-key"
RUN_PHASES = ["Pending", "Discovering", "Loading", "Transforming", "Succeeded"]
TERMINAL = {"Succeeded", "Failed", "Cancelled"}


# --- helpers -----------------------------------------------------------------------------


def core() -> client.CoreV1Api:
    return client.CoreV1Api()


def custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi()


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last seen: {last!r})")


def get_cr(namespace: str, plural: str, name: str) -> dict:
    return custom().get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)


def create_cr(namespace: str, plural: str, kind: str, name: str, spec: dict) -> dict:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}
    return custom().create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)


def phase(obj: dict) -> str | None:
    return (obj.get("status") or {}).get("phase")


def watch_run(namespace: str, name: str, until: set[str], timeout: float) -> tuple[list[str], dict]:
    """Follow a MaterializationRun with a watch; the phases seen in order, and the last object."""
    seen: list[str] = []
    last: dict = get_cr(namespace, "materializationruns", name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if phase(last) and (not seen or seen[-1] != phase(last)):
            seen.append(phase(last))
        if phase(last) in until:
            return seen, last
        stream = watch.Watch().stream(
            custom().list_namespaced_custom_object, GROUP, VERSION, namespace, "materializationruns",
            field_selector=f"metadata.name={name}",
            timeout_seconds=max(1, min(30, int(deadline - time.monotonic()))),
        )
        for event in stream:
            last = event["raw_object"]
            current = phase(last)
            if current and (not seen or seen[-1] != current):
                seen.append(current)
            if current in until:
                return seen, last
    pytest.fail(f"run {name} did not reach {sorted(until)} within {timeout:.0f} s; phases seen: {seen}")


def deployment(name: str, labels: dict, container: dict) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def service(name: str, labels: dict, port: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": labels, "ports": [{"port": port, "targetPort": port}]},
    }


def simulator(namespace: str, name: str, domain: str, *extra: str) -> str:
    """A CommCare HQ simulator pod from the same image; returns its base URL."""
    labels = {"app": name}
    container = {
        "name": "simulator",
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["data-explorer"],
        "args": ["simulator", "--host", "0.0.0.0", "--port", str(SIMULATOR_PORT), "--domain", domain, "--cases", "300", *extra],
        "ports": [{"containerPort": SIMULATOR_PORT}],
        "readinessProbe": {"tcpSocket": {"port": SIMULATOR_PORT}, "periodSeconds": 2},
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    }
    client.AppsV1Api().create_namespaced_deployment(namespace, deployment(name, labels, container))
    core().create_namespaced_service(namespace, service(name, labels, SIMULATOR_PORT))
    return f"http://{name}.{namespace}.svc:{SIMULATOR_PORT}"


def postgres(namespace: str) -> str:
    labels = {"app": "postgres"}
    container = {
        "name": "postgres",
        "image": os.environ.get("DATA_EXPLORER_E2E_POSTGRES_IMAGE", "postgres:16"),
        "env": [{"name": "POSTGRES_HOST_AUTH_METHOD", "value": "trust"}],
        "ports": [{"containerPort": 5432}],
        "readinessProbe": {"exec": {"command": ["pg_isready", "-U", "postgres"]}, "periodSeconds": 2},
    }
    client.AppsV1Api().create_namespaced_deployment(namespace, deployment("postgres", labels, container))
    core().create_namespaced_service(namespace, service("postgres", labels, 5432))
    return f"postgresql://postgres@postgres.{namespace}.svc:5432/postgres"


def wait_deployments_ready(namespace: str, names: list[str], timeout: float = 300) -> None:
    apps = client.AppsV1Api()

    def ready() -> bool:
        return all((apps.read_namespaced_deployment(n, namespace).status.ready_replicas or 0) >= 1 for n in names)

    wait_for(f"deployments {names} to be ready", ready, timeout, interval=2)


def secret(name: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "stringData": data}


def fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


# --- the installation -------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed():
    namespace = f"de-e2e-{secrets.token_hex(3)}"
    core().create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    helm_config = helm.Config(namespace=namespace)
    installed_release = False
    try:
        database_url = os.environ.get("DATA_EXPLORER_E2E_DATABASE_URL") or postgres(namespace)
        demo_url = simulator(namespace, "commcare-sim", "demo")
        # Every request answered after 5 s: a run that lasts long enough to be cancelled.
        slow_url = simulator(namespace, "commcare-slow", "slowdemo", "--fault-rate", "slow=1.0", "--slow-delay", "5")
        core().create_namespaced_secret(
            namespace, secret("data-explorer-database", {"DATABASE_URL": database_url, "DATA_EXPLORER_SECRET_KEY": fernet_key()})
        )
        core().create_namespaced_secret(namespace, secret("sim-commcare", {"username": SIM_USER, "apiKey": SIM_KEY}))
        wait_deployments_ready(namespace, ["commcare-sim", "commcare-slow"]
                               + ([] if os.environ.get("DATA_EXPLORER_E2E_DATABASE_URL") else ["postgres"]))

        values = chart_values(IMAGE, namespace, [f"commcare-sim.{namespace}.svc", f"commcare-slow.{namespace}.svc"])
        helm_config.install(CHART_DIR, RELEASE, values, namespace=namespace, wait="watcher", timeout=300)
        installed_release = True
        yield {"namespace": namespace, "demo_url": demo_url, "slow_url": slow_url}
    finally:
        _teardown(namespace, helm_config, installed_release)


def _teardown(namespace: str, helm_config: helm.Config, installed_release: bool) -> None:
    """Runs and tenants first, while the operator still runs their finalizers; then the release and namespace."""
    try:
        for plural in ("materializationruns", "tenantschemas"):
            _delete_all(namespace, plural)
    except ApiException:
        pass
    finally:
        if installed_release:
            helm_config.uninstall(RELEASE, ignore_not_found=True, timeout=120)
        helm_config.close()
        core().delete_namespace(namespace)


def _delete_all(namespace: str, plural: str, timeout: float = 120) -> None:
    def remaining() -> list[dict]:
        return custom().list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]

    for obj in remaining():
        custom().delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, obj["metadata"]["name"])
    deadline = time.monotonic() + timeout
    while remaining() and time.monotonic() < deadline:
        time.sleep(2)
    for leftover in remaining():  # never leave the namespace stuck on finalizers
        custom().patch_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, leftover["metadata"]["name"],
            {"metadata": {"finalizers": None}}, _content_type="application/merge-patch+json",
        )


@pytest.fixture(scope="module")
def tenant(installed):
    namespace = installed["namespace"]
    for name, domain, url in (("demo", "demo", installed["demo_url"]), ("slowdemo", "slowdemo", installed["slow_url"])):
        create_cr(namespace, "tenantschemas", "TenantSchema", name, {
            "tenant": domain,
            "commcare": {"baseUrl": url},
            "credentialsSecretRef": {"name": "sim-commcare"},
            "deletionPolicy": "Delete",
        })

    def active() -> dict | None:
        objs = [get_cr(namespace, "tenantschemas", n) for n in ("demo", "slowdemo")]
        failed = [o for o in objs if phase(o) == "Failed"]
        if failed:
            pytest.fail(f"TenantSchema {failed[0]['metadata']['name']} failed: {failed[0].get('status')}")
        return objs[0] if all(phase(o) == "Active" for o in objs) else None

    return wait_for("the TenantSchemas to become Active", active, timeout=180)


# --- the tests ----------------------------------------------------------------------------


def test_tenant_schema_becomes_active(installed, tenant):
    status = tenant["status"]
    assert status["phase"] == "Active"
    assert status["schema"] and status["readerRole"]
    ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"


def test_materialization_run_moves_through_phases(installed, tenant):
    namespace = installed["namespace"]
    create_cr(namespace, "materializationruns", "MaterializationRun", "e2e-full", {"tenantSchema": "demo", "mode": "full"})
    seen, run = watch_run(namespace, "e2e-full", TERMINAL, timeout=600)
    assert seen[-1] == "Succeeded", f"phases {seen}, status {run.get('status')}"
    assert seen == [p for p in RUN_PHASES if p in seen], f"phases out of order: {seen}"
    assert len(seen) >= 2, f"the run was only ever seen as {seen}"
    status = run["status"]
    assert status["jobName"] and status["startedAt"] and status["completedAt"]
    assert status.get("rows", 0) > 0

    job = client.BatchV1Api().read_namespaced_job(status["jobName"], namespace)
    pod = job.spec.template.spec
    assert job.spec.backoff_limit == 0 and pod.restart_policy == "Never"
    assert pod.service_account_name == f"{RELEASE}-runner"
    assert job.spec.template.metadata.labels.get("app.kubernetes.io/component") == "runner"
    assert job.metadata.owner_references and job.metadata.owner_references[0].kind == "MaterializationRun"

    demo = get_cr(namespace, "tenantschemas", "demo")["status"]
    assert demo["lastRun"] == "e2e-full" and demo["lastMaterializedAt"]

    create_cr(namespace, "materializationruns", "MaterializationRun", "e2e-incremental", {"tenantSchema": "demo"})
    seen, run = watch_run(namespace, "e2e-incremental", TERMINAL, timeout=600)
    assert seen[-1] == "Succeeded", f"phases {seen}, status {run.get('status')}"


def test_cancel_deletes_the_job(installed, tenant):
    namespace = installed["namespace"]
    create_cr(namespace, "materializationruns", "MaterializationRun", "e2e-cancel", {"tenantSchema": "slowdemo", "mode": "full"})
    seen, run = watch_run(namespace, "e2e-cancel", {"Discovering", "Loading", "Transforming"} | TERMINAL, timeout=300)
    assert phase(run) not in TERMINAL, f"the slow run ended before it could be cancelled: {seen}"
    job_name = wait_for("the run's Job", lambda: (get_cr(namespace, "materializationruns", "e2e-cancel").get("status") or {}).get("jobName"), 60)
    client.BatchV1Api().read_namespaced_job(job_name, namespace)  # it exists

    custom().patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "materializationruns", "e2e-cancel",
        {"spec": {"cancel": True}}, _content_type="application/merge-patch+json",
    )
    seen, run = watch_run(namespace, "e2e-cancel", TERMINAL, timeout=120)
    assert seen[-1] == "Cancelled", f"phases {seen}, status {run.get('status')}"
    assert run["status"]["completedAt"]

    def job_gone() -> bool:
        try:
            client.BatchV1Api().read_namespaced_job(job_name, namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(f"Job {job_name} to be deleted", job_gone, timeout=60)
    wait_for(
        f"the pods of Job {job_name} to go",
        lambda: not core().list_namespaced_pod(namespace, label_selector=f"job-name={job_name}").items,
        timeout=120,
        interval=2,
    )

    # a cancelled run cannot be resumed
    with pytest.raises(ApiException) as refused:
        custom().patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "materializationruns", "e2e-cancel",
            {"spec": {"cancel": False}}, _content_type="application/merge-patch+json",
        )
    assert refused.value.status == 422
