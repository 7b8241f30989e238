"""What the reconcilers share: settings, the database, the Kubernetes API, runner set-up."""

from __future__ import annotations

import logging
import uuid
import threading
from dataclasses import dataclass, field
from typing import Any

from data_explorer.config import Settings
from data_explorer.kube.api import KubeApi, KubeError
from data_explorer.kube.resources import EVENTS, Resource
from data_explorer.kube.run_status import now_api_time
from data_explorer.operator.builders import RunnerConfig
from data_explorer.warehouse.database import Database
from data_explorer.warehouse.secrets import SecretBox

log = logging.getLogger(__name__)


@dataclass
class OperatorContext:
    settings: Settings
    db: Database
    kube: KubeApi
    runner: RunnerConfig
    box: SecretBox
    # Seconds between checks of unfinished runs (Job conditions) and of tenants (TTL, drift).
    run_interval: float = 5.0
    tenant_interval: float = 60.0
    # The phase each resource (by uid) was last announced in, so every transition gets one Event.
    _announced: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _serials: dict[str, threading.Lock] = field(default_factory=dict)

    @property
    def control(self) -> str:
        return self.settings.control_schema

    def serial(self, key: str) -> threading.Lock:
        """The lock that keeps reconcile passes of one resource from overlapping (kopf runs a
        resource's change handlers and its timer concurrently, each in a thread)."""
        with self._lock:
            return self._serials.setdefault(key, threading.Lock())

    def write_status(self, resource: Resource, body: dict[str, Any], status: dict[str, Any], reason_prefix: str) -> dict[str, Any]:
        """Patch what changed in a resource's status (None values left out) and announce a new phase."""
        meta, old = body.get("metadata") or {}, body.get("status") or {}
        status = {k: v for k, v in status.items() if v is not None}
        if any(old.get(k) != v for k, v in status.items()):
            self.kube.patch(resource, meta["namespace"], meta["name"], {"status": status}, status=True)
            body.setdefault("status", {}).update(status)
        self.announce(body, reason_prefix)
        return status

    def announce(self, body: dict[str, Any], reason_prefix: str) -> None:
        """One Event per phase a resource enters, however the phase was written (here, or by a runner)."""
        meta, status = body.get("metadata") or {}, body.get("status") or {}
        phase, uid = status.get("phase"), meta.get("uid") or meta.get("name")
        if not phase:
            return
        with self._lock:
            if self._announced.get(uid) == phase:
                return
            self._announced[uid] = phase
        detail = (status.get("error") or {}).get("message") or status.get("message") or (status.get("progress") or {}).get("message") or phase
        self.event(body, f"{reason_prefix}{phase}", detail, warning=phase == "Failed")

    def forget(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        with self._lock:
            self._announced.pop(meta.get("uid") or meta.get("name"), None)

    def event(self, body: dict[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        """Post a Kubernetes Event on the resource; best effort (an event lost is no reason to fail)."""
        try:
            self.kube.create(EVENTS, body["metadata"]["namespace"], build_event(body, reason, message, warning))
        except KubeError as exc:
            log.warning("could not post event %s on %s: %s", reason, body["metadata"].get("name"), exc)


def build_event(body: dict[str, Any], reason: str, message: str, warning: bool) -> dict[str, Any]:
    """A core/v1 Event about a resource, with a unique name. Pure but for the clock and the name."""
    meta, stamp = body["metadata"], now_api_time()
    return {
        "metadata": {"name": f"{meta['name'][:200]}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "name": meta["name"],
            "namespace": meta["namespace"], "uid": meta.get("uid"),
        },
        "type": "Warning" if warning else "Normal",
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "data-explorer-operator"},
        "reportingComponent": "dataexplorer.io/operator",
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }


def condition(kind: str, ok: bool | None, reason: str, message: str, generation: int | None,
              previous: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A standard condition; lastTransitionTime moves only when the status does."""
    status = "Unknown" if ok is None else ("True" if ok else "False")
    old = next((c for c in previous or [] if c.get("type") == kind), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else now_api_time()
    out = {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": since}
    if generation is not None:
        out["observedGeneration"] = generation
    return out
