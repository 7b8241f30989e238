"""Playing the kubelet for one runner Job: run its container's command here, with the
environment its pod would get (secretKeyRef resolved from the Secrets in the emulated API)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from data_explorer.kube.api import KubeApi
from data_explorer.kube.resources import SECRETS


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "runner", "user": {"token": "runner-token"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "runner", "namespace": "tenants"}}],
    }))
    return path


def pod_environment(api: KubeApi, job: dict[str, Any]) -> dict[str, str]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    namespace = job["metadata"]["namespace"]
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        secret = api.get(SECRETS, namespace, ref["name"])
        data = (secret or {}).get("data") or {}
        if ref["key"] in data:
            env[item["name"]] = base64.b64decode(data[ref["key"]]).decode()
        elif not ref.get("optional"):
            raise AssertionError(f"the pod would not start: Secret {ref['name']} has no key {ref['key']}")
    return env


def run_job(api: KubeApi, job: dict[str, Any], *, kubeconfig: Path, home: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMMCARE_", "DATA_EXPLORER_", "DATABASE_URL"))}
    env.update(pod_environment(api, job))
    env.update({"KUBECONFIG": str(kubeconfig), "DATA_EXPLORER_HOME": str(home), "HOME": str(home)})
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.run(
        [sys.executable, "-m", "data_explorer.cli", *container["args"]], env=env,
        capture_output=True, text=True, timeout=timeout,
    )


async def seed_runnable_tenant(cluster, settings, domain: str, base_url: str, name: str = "clinic") -> None:
    """What a platform team sets up before runs can work: the runners' database Secret, the
    tenant's CommCare Secret (the simulator's demo user) and an Active TenantSchema."""
    from data_explorer.kube.resources import SECRETS, TENANT_SCHEMAS
    from data_explorer.simulator import DEMO_API_KEY, DEMO_USER

    from .conftest import tenant_body

    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    await cluster.create(SECRETS, {"metadata": {"name": "data-explorer-database"},
                                   "data": {"DATABASE_URL": b64(settings.database_url),
                                            "DATA_EXPLORER_SECRET_KEY": b64(settings["DATA_EXPLORER_SECRET_KEY"])}})
    await cluster.create(SECRETS, {"metadata": {"name": f"{name}-commcare"},
                                   "data": {"username": b64(DEMO_USER), "apiKey": b64(DEMO_API_KEY)}})
    body = tenant_body(name, domain)
    body["spec"]["commcare"]["baseUrl"] = base_url
    await cluster.create(TENANT_SCHEMAS, body)
    await cluster.wait_for(TENANT_SCHEMAS, name, lambda o: o and (o.get("status") or {}).get("phase") == "Active")
