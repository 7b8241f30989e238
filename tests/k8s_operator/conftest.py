"""The operator against kmock (a stateful Kubernetes API emulator) and the real PostgreSQL.

kmock keeps objects and serves list/watch/patch/delete (with finalizers) but has
no controllers: no Job controller, no garbage collector, no uid or generation
bookkeeping. Tests therefore give objects a uid and resourceVersion, and play
the Job controller by patching Job status themselves.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from typing import Any

import kmock as kmock_lib
import pytest
import pytest_asyncio
from cryptography.fernet import Fernet

from data_explorer.kube.api import KubeApi
from data_explorer.kube.resources import (
    EVENTS,
    JOBS,
    MATERIALIZATION_RUNS,
    NETWORK_POLICIES,
    SECRETS,
    TENANT_SCHEMAS,
    Resource,
)

NS = "tenants"
ALL_VERBS = {"list", "watch", "get", "create", "update", "patch", "delete"}


def declare_resources(kmock) -> None:
    info = kmock_lib.ResourceInfo
    kmock.resources["dataexplorer.io/v1alpha1/tenantschemas"] = info(
        kind="TenantSchema", namespaced=True, verbs=ALL_VERBS, subresources={"status"})
    kmock.resources["dataexplorer.io/v1alpha1/materializationruns"] = info(
        kind="MaterializationRun", namespaced=True, verbs=ALL_VERBS, subresources={"status"})
    kmock.resources["batch/v1/jobs"] = info(kind="Job", namespaced=True, verbs=ALL_VERBS, subresources={"status"})
    kmock.resources["v1/secrets"] = info(kind="Secret", namespaced=True, verbs=ALL_VERBS)
    kmock.resources["networking.k8s.io/v1/networkpolicies"] = info(kind="NetworkPolicy", namespaced=True, verbs=ALL_VERBS)
    kmock.resources["v1/events"] = info(kind="Event", namespaced=True, verbs=ALL_VERBS)
    kmock.resources["v1/namespaces"] = info(kind="Namespace", namespaced=False, verbs={"list", "watch", "get"})
    kmock.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = info(
        kind="CustomResourceDefinition", namespaced=False, verbs={"list", "watch", "get"})


class ApiServerLike(kmock_lib.KubernetesEmulator):
    """The emulator, plus the bookkeeping a real API server does on create: uid, resourceVersion,
    generation, creationTimestamp and the namespace from the URL (clients need not send them)."""

    async def _handle(self, request):
        if request.resource is not None and request.action == kmock_lib.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if request.namespace:
                meta.setdefault("namespace", request.namespace)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("resourceVersion", "1")
            meta.setdefault("generation", 1)
            meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        return await super()._handle(request)


@pytest.fixture
def kmock_options():
    return {"cls": ApiServerLike}


class Cluster:
    """The emulated API, used from async tests (sync calls go to a thread: the emulator shares this loop)."""

    def __init__(self, kmock):
        self.kmock = kmock
        self.api = KubeApi(str(kmock.url).rstrip("/"))

    async def create(self, resource: Resource, body: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self.api.create, resource, NS, body)

    async def get(self, resource: Resource, name: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.api.get, resource, NS, name)

    async def list(self, resource: Resource) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.api.list, resource, NS)

    async def patch(self, resource: Resource, name: str, body: dict[str, Any], status: bool = False):
        return await asyncio.to_thread(lambda: self.api.patch(resource, NS, name, body, status=status))

    async def delete(self, resource: Resource, name: str) -> bool:
        return await asyncio.to_thread(self.api.delete, resource, NS, name)

    async def wait_for(self, resource: Resource, name: str, check, timeout: float = 20.0, what: str = "") -> dict[str, Any]:
        """Poll until ``check(obj)`` holds; fail with the last state seen."""
        deadline = asyncio.get_running_loop().time() + timeout
        obj = None
        while asyncio.get_running_loop().time() < deadline:
            obj = await self.get(resource, name)
            if check(obj):
                return obj
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what or resource.plural + '/' + name}; last seen: {obj}")

    async def events_for(self, name: str) -> list[dict[str, Any]]:
        events = await asyncio.to_thread(self.api.list, EVENTS, NS)
        return [e for e in events if (e.get("involvedObject") or {}).get("name") == name]


@pytest_asyncio.fixture
async def cluster(kmock):
    declare_resources(kmock)
    c = Cluster(kmock)
    yield c
    c.api.close()


@pytest.fixture
def operator_settings(make_settings):
    key = Fernet.generate_key().decode()
    return make_settings(
        DATA_EXPLORER_SECRET_KEY=key,
        DATA_EXPLORER_RUNNER_IMAGE="registry.example/data-explorer:0.1.0",
        DATA_EXPLORER_NAMESPACE=NS,
        DATA_EXPLORER_EGRESS_PROXY_URL="http://data-explorer-egress-proxy:3128",
        DATA_EXPLORER_EGRESS_PROXY_LABELS="app.kubernetes.io/component=egress-proxy,app.kubernetes.io/instance=dx",
        DATA_EXPLORER_POSTGRES_CIDRS="10.20.0.0/24",
        DATA_EXPLORER_KUBERNETES_API_CIDRS="10.96.0.1/32",
    )


class OperatorHandle:
    """The operator in a thread with its own event loop, as in a pod: the emulator keeps this
    test's loop, and stopping the operator never touches the test's tasks."""

    def __init__(self, cluster: Cluster, settings, db):
        self.cluster, self.settings, self.db = cluster, settings, db
        self.thread: threading.Thread | None = None
        self.stop_flag: threading.Event | None = None
        self.ctx = None

    async def start(self, run_interval: float = 0.3, tenant_interval: float = 0.5) -> None:
        import kopf

        from data_explorer.operator.builders import RunnerConfig
        from data_explorer.operator.context import OperatorContext
        from data_explorer.operator.handlers import build_registry
        from data_explorer.warehouse.secrets import SecretBox

        url = str(self.cluster.kmock.url).rstrip("/")
        self.ctx = OperatorContext(
            self.settings, self.db, KubeApi(url), RunnerConfig.from_settings(self.settings),
            SecretBox.from_settings(self.settings), run_interval=run_interval, tenant_interval=tenant_interval,
        )
        registry = build_registry(self.ctx, login=lambda **_: kopf.ConnectionInfo(server=url, insecure=True))
        self.stop_flag, ready = threading.Event(), threading.Event()
        self.thread = threading.Thread(
            target=lambda: asyncio.run(kopf.operator(
                registry=registry, standalone=True, namespaces=[NS], stop_flag=self.stop_flag, ready_flag=ready,
            )),
            name="operator", daemon=True,
        )
        self.thread.start()
        assert await asyncio.to_thread(ready.wait, 15), "the operator did not start"

    async def stop(self) -> None:
        if self.thread is None:
            return
        self.stop_flag.set()
        await asyncio.to_thread(self.thread.join, 20)
        if self.thread.is_alive():
            logging.getLogger(__name__).warning("the operator thread did not stop within 20 s; left to die with the process")
        self.thread = None
        self.ctx.kube.close()


@pytest_asyncio.fixture
async def operator(cluster, operator_settings, db):
    logging.getLogger("kopf").setLevel(logging.WARNING)
    handle = OperatorHandle(cluster, operator_settings, db)
    await handle.start()
    yield handle
    await handle.stop()


def tenant_body(name: str, domain: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "provider": "commcare", "tenant": domain, "commcare": {"baseUrl": "https://www.commcarehq.org"},
            "credentialsSecretRef": {"name": f"{name}-commcare"}, "deletionPolicy": "Retain", **spec,
        },
    }


def credentials_body(name: str, username: str = "user@example.org", api_key: str = "k" * 40) -> dict[str, Any]:
    import base64

    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    return {"metadata": {"name": name}, "type": "Opaque", "data": {"username": b64(username), "apiKey": b64(api_key)}}


def run_body(name: str, tenant: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"tenantSchema": tenant, "pipeline": "commcare_sync", "mode": "incremental",
                                                 "cancel": False, "activeDeadlineSeconds": 3600, **spec}}


__all__ = ["NS", "Cluster", "tenant_body", "credentials_body", "run_body", "JOBS", "MATERIALIZATION_RUNS",
           "NETWORK_POLICIES", "SECRETS", "TENANT_SCHEMAS"]
