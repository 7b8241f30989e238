"""The Kubernetes control plane: runs are MaterializationRun resources carried out by the
operator's Jobs; the gateway creates them, reads their status and cancels them with
``spec.cancel``. Same interface, and so the same MCP tools, as the local control plane.

A caller's own credential (HTTP gateway) travels in a per-run Secret the run names in
``spec.credentialsSecretRef``; it is labelled for that run, owned by it once it exists,
and deleted by the operator when the run ends.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from datetime import datetime
from typing import Any

from data_explorer.control.base import Conflict, ControlError, NotFound, RunView
from data_explorer.kube.api import KubeApi, KubeError
from data_explorer.kube.resources import LABEL_PASS_THROUGH, LABEL_RUN_ID, MATERIALIZATION_RUNS, SECRETS, TENANT_SCHEMAS
from data_explorer.loaders.commcare.credentials import ApiKeyCredential, BearerCredential, OAuthCredential
from data_explorer.operator.builders import child_name, label_value
from data_explorer.pipelines.status import TERMINAL

ANNOTATION_DOMAIN = "dataexplorer.io/domain"
CANCEL_WAIT = 60.0  # seconds cancel_run waits for the operator to record Cancelled
POLL = 0.5


def pass_through_data(credential: Any) -> dict[str, str]:
    """A caller's credential as the Secret data a run's Job reads. Pure."""
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    if isinstance(credential, ApiKeyCredential):
        return {"username": b64(credential.username), "apiKey": b64(credential.api_key)}
    if isinstance(credential, BearerCredential):
        data = {"oauthToken": b64(credential.token)}
    elif isinstance(credential, OAuthCredential) and credential.access_token:
        data = {"oauthToken": b64(credential.access_token)}  # the refresh token stays with the gateway
    else:
        raise ControlError("this credential cannot be passed to a runner Job (no API key or access token)")
    if credential.username:
        data["username"] = b64(credential.username)
    return data


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def run_view(run: dict[str, Any], domain: str) -> RunView:
    """A MaterializationRun as the gateway's RunView. Pure."""
    meta, spec, status = run.get("metadata") or {}, run.get("spec") or {}, run.get("status") or {}
    run_id = (meta.get("labels") or {}).get(LABEL_RUN_ID) or status.get("runId") or meta.get("uid") or meta.get("name")
    return RunView(
        run_id=run_id, domain=domain, pipeline=spec.get("pipeline") or "commcare_sync",
        mode=spec.get("mode") or "incremental", phase=status.get("phase") or "Pending",
        phases=status.get("phases") or {}, progress=status.get("progress") or {"current": 0, "total": 100, "message": "waiting for the operator"},
        error=status.get("error"), created_at=_when(meta.get("creationTimestamp")),
        started_at=_when(status.get("startedAt")), completed_at=_when(status.get("completedAt")),
    )


class KubernetesControlPlane:
    def __init__(self, kube: KubeApi, namespace: str, *, cancel_wait: float = CANCEL_WAIT):
        self.kube, self.namespace, self.cancel_wait = kube, namespace, cancel_wait

    async def start_run(self, domain: str, pipeline: str, full: bool, credential: Any = None) -> RunView:
        return await asyncio.to_thread(self._start, domain, pipeline, full, credential)

    def _tenant_schema(self, domain: str) -> dict[str, Any]:
        for tenant in self.kube.list(TENANT_SCHEMAS, self.namespace):
            if (tenant.get("spec") or {}).get("tenant") == domain and not tenant["metadata"].get("deletionTimestamp"):
                return tenant
        raise NotFound(
            f"no TenantSchema declares project space {domain!r} in namespace {self.namespace!r}: "
            "ask the platform team to create one (see deploy/examples/tenantschema.yaml)"
        )

    def _start(self, domain: str, pipeline: str, full: bool, credential: Any) -> RunView:
        try:
            tenant = self._tenant_schema(domain)
            tenant_name = tenant["metadata"]["name"]
            for other in self.kube.list(MATERIALIZATION_RUNS, self.namespace):
                ospec, ostatus = other.get("spec") or {}, other.get("status") or {}
                if ospec.get("tenantSchema") == tenant_name and ostatus.get("phase") not in TERMINAL and not ospec.get("cancel"):
                    view = run_view(other, domain)
                    raise Conflict(f"project space {domain!r} already has a run in progress ({view.run_id})", {"run_id": view.run_id})
            run_id = str(uuid.uuid4())
            name = child_name(f"{tenant_name[:40]}-{run_id[:8]}")
            spec: dict[str, Any] = {"tenantSchema": tenant_name, "pipeline": pipeline, "mode": "full" if full else "incremental",
                                    "cancel": False}
            secret_name = None
            if credential is not None:
                secret_name = child_name(name, "-pass-through")
                self.kube.create(SECRETS, self.namespace, {
                    "metadata": {"name": secret_name, "labels": {LABEL_PASS_THROUGH: label_value(name), LABEL_RUN_ID: run_id}},
                    "type": "Opaque", "data": pass_through_data(credential),
                })
                spec["credentialsSecretRef"] = {"name": secret_name}
            try:
                run = self.kube.create(MATERIALIZATION_RUNS, self.namespace, {
                    "metadata": {"name": name, "labels": {LABEL_RUN_ID: run_id}, "annotations": {ANNOTATION_DOMAIN: domain}},
                    "spec": spec,
                })
            except KubeError:
                if secret_name:
                    self.kube.delete(SECRETS, self.namespace, secret_name)
                raise
            uid = (run.get("metadata") or {}).get("uid")
            if secret_name and uid:  # collected with the run, whatever happens to the operator
                self.kube.patch(SECRETS, self.namespace, secret_name, {"metadata": {"ownerReferences": [{
                    "apiVersion": MATERIALIZATION_RUNS.api_version, "kind": MATERIALIZATION_RUNS.kind,
                    "name": name, "uid": uid, "controller": True, "blockOwnerDeletion": True}]}})
            return run_view(run, domain)
        except KubeError as exc:
            raise ControlError(f"the Kubernetes API refused the run: {exc}") from None

    def _find(self, run_id: str) -> dict[str, Any] | None:
        found = self.kube.list(MATERIALIZATION_RUNS, self.namespace, labels={LABEL_RUN_ID: run_id})
        if not found:  # a run created with kubectl: known by its uid
            found = [r for r in self.kube.list(MATERIALIZATION_RUNS, self.namespace)
                     if (r.get("status") or {}).get("runId") == run_id or r["metadata"].get("uid") == run_id]
        return found[0] if found else None

    def _domain(self, run: dict[str, Any]) -> str:
        domain = ((run.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_DOMAIN)
        if domain:
            return domain
        tenant = self.kube.get(TENANT_SCHEMAS, self.namespace, (run.get("spec") or {}).get("tenantSchema") or "")
        return ((tenant or {}).get("spec") or {}).get("tenant") or ""

    async def get_run(self, run_id: str) -> RunView | None:
        def get() -> RunView | None:
            run = self._find(run_id)
            return run_view(run, self._domain(run)) if run else None

        try:
            return await asyncio.to_thread(get)
        except KubeError as exc:
            raise ControlError(f"the Kubernetes API could not be read: {exc}") from None

    async def cancel_run(self, run_id: str) -> RunView:
        """Set spec.cancel and wait for the operator to delete the Job and record the end."""
        run = await asyncio.to_thread(self._find, run_id)
        if run is None:
            raise NotFound(f"no run {run_id}")
        domain = await asyncio.to_thread(self._domain, run)
        if (run.get("status") or {}).get("phase") in TERMINAL:
            return run_view(run, domain)
        name = run["metadata"]["name"]
        await asyncio.to_thread(self.kube.patch, MATERIALIZATION_RUNS, self.namespace, name, {"spec": {"cancel": True}})
        deadline = time.monotonic() + self.cancel_wait
        while time.monotonic() < deadline:
            run = await asyncio.to_thread(self.kube.get, MATERIALIZATION_RUNS, self.namespace, name)
            if run is None or (run.get("status") or {}).get("phase") in TERMINAL:
                break
            await asyncio.sleep(POLL)
        if run is None:
            raise NotFound(f"run {run_id} was deleted while being cancelled")
        return run_view(run, domain)

    async def maintain(self) -> None:
        """Nothing to collect: the operator and the API server look after Jobs."""

    async def close(self) -> None:
        await asyncio.to_thread(self.kube.close)
