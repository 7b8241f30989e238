"""A run's status as the MaterializationRun status subresource holds it. Pure.

Both writers use it: the runner (from its RunStatus) and the operator (from the
run's control-table row), so the two can never disagree on the shape.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def api_time(value: datetime | None) -> str | None:
    """A timestamp as the Kubernetes API writes them: UTC, whole seconds, ``Z``."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def now_api_time() -> str:
    return api_time(datetime.now(timezone.utc))


def rows_loaded(phases: dict[str, Any] | None) -> int:
    """Rows loaded over all sources, from a run's phases.load."""
    load = (phases or {}).get("load") or {}
    return sum(e["rows"] for e in load.values() if isinstance(e, dict) and isinstance(e.get("rows"), int))


def resource_status(*, run_id: str, phase: str, phases: dict[str, Any] | None, progress: dict[str, Any] | None,
                    error: dict[str, Any] | None, started_at: datetime | None, completed_at: datetime | None) -> dict[str, Any]:
    return {
        "phase": phase, "phases": phases or {}, "progress": progress or {}, "rows": rows_loaded(phases),
        "error": error, "startedAt": api_time(started_at), "completedAt": api_time(completed_at), "runId": str(run_id),
    }
