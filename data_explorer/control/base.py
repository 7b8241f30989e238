"""The control plane the gateway talks to: start, watch and cancel runs; tenant state.

Two implementations share this interface: ``local`` (control tables and child
processes, the embedded default) and, on Kubernetes, custom resources. The
gateway does not know which one it has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from data_explorer.pipelines.status import TERMINAL


class ControlError(Exception):
    """A control-plane refusal with a closed code the MCP layer passes on."""

    code = "INTERNAL_ERROR"

    def __init__(self, message: str, detail: dict[str, Any] | None = None):
        super().__init__(message)
        self.detail = detail or {}


class Conflict(ControlError):
    code = "CONFLICT"


class NotFound(ControlError):
    code = "NOT_FOUND"


@dataclass(frozen=True)
class RunView:
    run_id: str
    domain: str
    pipeline: str
    mode: str
    phase: str
    phases: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.phase in TERMINAL

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "RunView":
        return cls(
            run_id=str(row["run_id"]), domain=row["domain"], pipeline=row["pipeline"], mode=row["mode"],
            phase=row["phase"], phases=row["phases"] or {}, progress=row["progress"] or {}, error=row["error"],
            created_at=row["created_at"], started_at=row["started_at"], completed_at=row["completed_at"],
        )


class ControlPlane(Protocol):
    async def start_run(self, domain: str, pipeline: str, full: bool, credential: Any) -> RunView:
        """Create a run and start its runner; Conflict when the tenant has one unfinished."""

    async def get_run(self, run_id: str) -> RunView | None: ...

    async def cancel_run(self, run_id: str) -> RunView:
        """Stop the run's work for real and return its final state."""

    async def maintain(self) -> None:
        """Periodic housekeeping (e.g. collecting finished runner processes)."""

    async def close(self) -> None: ...
