"""The runner's status on Kubernetes: patches its MaterializationRun's status subresource,
so `kubectl get mrun -w` shows it moving. The only API call a runner may make."""

from __future__ import annotations

import logging

from data_explorer.kube.api import KubeApi, KubeError
from data_explorer.kube.resources import MATERIALIZATION_RUNS
from data_explorer.operator.builders import total_rows
from data_explorer.pipelines.reporters import Throttle
from data_explorer.pipelines.status import RunStatus

log = logging.getLogger(__name__)


def status_patch(status: RunStatus) -> dict:
    """The status subresource patch for a run's status. Pure."""
    data = status.as_dict()
    return {"status": {
        "phase": data["phase"], "phases": data["phases"], "progress": data["progress"], "rows": total_rows(data["phases"]),
        "error": data["error"], "startedAt": _z(data["started_at"]), "completedAt": _z(data["completed_at"]),
        "runId": data["run_id"],
    }}


def _z(value: str | None) -> str | None:
    return value.split(".")[0].replace("+00:00", "") + "Z" if value else None


class ResourceStatusReporter:
    """Best effort: the control-table row stays the record, and the operator mirrors it when patches fail."""

    def __init__(self, api: KubeApi, namespace: str, name: str, interval: float = 1.0):
        self.api, self.namespace, self.name = api, namespace, name
        self._throttle = Throttle(interval)
        self._warned = False

    def report(self, status: RunStatus, *, important: bool = False) -> None:
        if not self._throttle.due(important):
            return
        patch = status_patch(status)
        patch["status"] = {k: v for k, v in patch["status"].items() if v is not None}
        try:
            self.api.patch(MATERIALIZATION_RUNS, self.namespace, self.name, patch, status=True)
        except KubeError as exc:
            if not self._warned:
                log.warning("cannot patch MaterializationRun %s/%s status (the operator mirrors it): %s", self.namespace, self.name, exc)
                self._warned = True

    def close(self) -> None:
        self.api.close()
