"""The runner's status on Kubernetes: patches its MaterializationRun's status subresource,
so `kubectl get mrun -w` shows it moving. The only API call a runner may make."""

from __future__ import annotations

import logging

from data_explorer.kube.api import KubeApi, KubeError
from data_explorer.kube.resources import MATERIALIZATION_RUNS
from data_explorer.kube.run_status import resource_status
from data_explorer.pipelines.reporters import Throttle
from data_explorer.pipelines.status import RunStatus

log = logging.getLogger(__name__)


def status_patch(status: RunStatus) -> dict:
    """The status subresource patch for a run's status. Pure."""
    return {"status": resource_status(
        run_id=status.run_id, phase=status.phase, phases=status.phases, progress=status.progress,
        error=status.error, started_at=status.started_at, completed_at=status.completed_at,
    )}


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
