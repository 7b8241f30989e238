"""Argument types and small helpers shared by the tool bodies."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from data_explorer.control.base import RunView
from data_explorer.mcp_gateway.models import RunData, RunSummary
from data_explorer.pipelines.status import incomplete_sources

TenantArg = Annotated[
    str | None,
    Field(
        default=None, max_length=80,
        description=(
            "The CommCare project space to act on, by its name (as in /a/<name>/); optional when you belong to exactly "
            "one. list_tenants shows yours; one it leaves out (a plan without CommCare's integration feature) can be named too."
        ),
    ),
]
VerboseArg = Annotated[bool, Field(default=False, description="Include full detail instead of the compact listing.")]
RunIdArg = Annotated[str, Field(min_length=1, max_length=64, description="The run_id that run_materialization returned.")]


def run_summary(row: dict[str, Any] | None) -> RunSummary | None:
    if not row:
        return None
    return RunSummary(
        run_id=str(row["run_id"]), phase=row["phase"], progress=row["progress"] or {}, error=row["error"],
        created_at=row["created_at"], completed_at=row["completed_at"],
    )


def incomplete(phases: dict[str, Any] | None) -> dict[str, str] | None:
    """The shortfalls a run's load phase records (its own full passes', or the last ones'), or None."""
    return incomplete_sources((phases or {}).get("load") or {}) or None


def _compact_phases(phases: dict[str, Any]) -> dict[str, Any]:
    """Per phase, the state and the counts an agent acts on; not every model's timing."""
    out: dict[str, Any] = {}
    if phases.get("discover"):
        d = phases["discover"]
        out["discover"] = {k: d.get(k) for k in ("state", "apps", "case_types", "forms") if k in d}
    if phases.get("load"):
        out["load"] = {name: {k: s.get(k) for k in ("state", "rows", "mode", "reread", "reread_new", "counts") if k in s}
                       for name, s in phases["load"].items()}
    if phases.get("transform"):
        t = phases["transform"]
        models = t.get("models") or {}
        out["transform"] = {
            "state": t.get("state"),
            "mode": t.get("mode"),  # incremental: changes applied in place; full: dbt built every table
            **({"reason": t["reason"]} if t.get("reason") else {}),  # why a full build was needed
            "models_built": sum(1 for m in models.values() if m.get("state") == "success"),
            "models_total": t.get("total"),
            "failed": [n for n, m in models.items() if m.get("state") not in ("success", None)],
        }
    return out


def run_data(run: RunView, verbose: bool) -> RunData:
    next_step = {
        "Succeeded": "the data is published: call list_tables, then query",
        "Failed": "read error.message; fix the cause and call run_materialization again",
        "Cancelled": "call run_materialization again when you want fresh data",
    }.get(run.phase, f"call get_materialization_status(run_id='{run.run_id}') to follow it")
    return RunData(
        run_id=run.run_id, tenant_id=run.domain, pipeline=run.pipeline, mode=run.mode, phase=run.phase,
        progress=run.progress, error=run.error, created_at=run.created_at, started_at=run.started_at,
        completed_at=run.completed_at, phases=run.phases if verbose else _compact_phases(run.phases),
        incomplete=incomplete(run.phases), next_step=next_step,
    )
