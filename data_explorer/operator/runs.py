"""MaterializationRun reconciliation: one Job per run, its phases mirrored from the Job's
conditions and the run's row in the control tables.

Level-based: every call looks at what exists (the run, its TenantSchema, its Job,
its row) and takes the one step that moves it on, so create, resume, update,
the periodic check and an operator restarted mid-run all converge the same way.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from data_explorer.kube.api import KubeError
from data_explorer.kube.resources import JOBS, MATERIALIZATION_RUNS, NETWORK_POLICIES, SECRETS, TENANT_SCHEMAS
from data_explorer.operator.builders import (
    RunPlan,
    SpecError,
    build_credentials_secret,
    build_job,
    build_network_policy,
    credentials_data,
    credentials_secret_name,
    is_pass_through_secret,
    job_name,
    job_outcome,
    network_policy_name,
    plan_run,
    run_id_for,
    run_in_progress,
)
from data_explorer.kube.run_status import now_api_time, resource_status
from data_explorer.operator.context import OperatorContext
from data_explorer.operator.tenants import Retry, reconcile_tenant
from data_explorer.pipelines.status import TERMINAL, RunStatus
from data_explorer.warehouse.control_tables import ensure_control_tables
from data_explorer.warehouse.runs import ActiveRunExists, finish_run, get_run, insert_run

log = logging.getLogger(__name__)

CANCELLED_MESSAGE = "the run was cancelled; the published data is unchanged"


def status_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """The resource status that mirrors a run's control-table row. Pure."""
    return resource_status(
        run_id=row["run_id"], phase=row["phase"], phases=row.get("phases"), progress=row.get("progress"),
        error=row.get("error"), started_at=row.get("started_at"), completed_at=row.get("completed_at"),
    )


def _patch(ctx: OperatorContext, body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return ctx.write_status(MATERIALIZATION_RUNS, body, status, "Run")


def _end(ctx: OperatorContext, body: dict[str, Any], phase: str, code: str, message: str, run_id: str | None) -> None:
    """End the run from outside its runner; the control-table row wins if the runner ended it first."""
    row = None
    if run_id:
        with ctx.db.connect(autocommit=True) as conn:
            ensure_control_tables(conn, ctx.control)
            finish_run(conn, ctx.control, run_id, phase, code, message)
            row = get_run(conn, ctx.control, run_id)
    if row is not None:
        _patch(ctx, body, status_from_row(row))
    else:
        progress = dict((body.get("status") or {}).get("progress") or {"current": 0, "total": 100})
        progress["message"] = message
        _patch(ctx, body, {"phase": phase, "error": {"code": code, "message": message}, "completedAt": now_api_time(),
                           "progress": progress})
    finalize_run(ctx, body)


def reconcile_run(ctx: OperatorContext, body: dict[str, Any]) -> None:
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    if status.get("phase") in TERMINAL:
        finalize_run(ctx, body)
        return
    namespace, name = meta["namespace"], meta["name"]
    try:
        run_id: str | None = run_id_for(meta)
    except SpecError:
        run_id = None
    tenant = ctx.kube.get(TENANT_SCHEMAS, namespace, spec.get("tenantSchema") or "") if spec.get("tenantSchema") else None
    try:
        plan = plan_run(body, tenant)
    except SpecError as exc:
        _end(ctx, body, "Failed", "INVALID_SPEC", str(exc), run_id)
        return
    job = ctx.kube.get(JOBS, namespace, job_name(name))
    if spec.get("cancel"):
        cancel_run(ctx, body, plan, job)
        return
    if job is None:
        if status.get("jobName"):  # it was created, and is gone before the run ended
            _end(ctx, body, "Failed", "JobDeleted",
                 f"the run's Job {status['jobName']} was deleted before the run finished; the published data is unchanged",
                 plan.run_id)
            return
        start_run(ctx, body, plan, tenant)
        return
    outcome = job_outcome(job)
    with ctx.db.connect(autocommit=True) as conn:
        row = get_run(conn, ctx.control, plan.run_id)
    if outcome.state == "running":
        if row is not None:
            _mirror_progress(ctx, body, row)
        return
    if row is not None and row["phase"] in TERMINAL:
        _patch(ctx, body, status_from_row(row))
        finalize_run(ctx, body)
        return
    if outcome.state == "succeeded":  # the pod exited 0 without recording an end: should not happen
        _end(ctx, body, "Failed", "RUNNER_LOST", "the runner exited without recording the run's end", plan.run_id)
    elif outcome.reason == "DeadlineExceeded":
        deadline = plan.deadline
        _end(ctx, body, "Failed", "DeadlineExceeded",
             f"the run did not finish within activeDeadlineSeconds ({deadline}s) and was stopped; the published data is unchanged",
             plan.run_id)
    else:
        detail = f" ({outcome.reason}: {outcome.message})" if outcome.message else f" ({outcome.reason})"
        _end(ctx, body, "Failed", "RUNNER_FAILED",
             f"the runner pod failed{detail} before recording the run's end; see `kubectl logs job/{job_name(name)}`", plan.run_id)


def _mirror_progress(ctx: OperatorContext, body: dict[str, Any], row: dict[str, Any]) -> None:
    """Carry the row's progress to the resource when the runner's own patches have not (they go first)."""
    status = body.get("status") or {}
    mirrored = status_from_row(row)
    if (mirrored["progress"].get("current", 0) >= (status.get("progress") or {}).get("current", 0)
            and mirrored["phase"] != "Pending"):
        _patch(ctx, body, {k: mirrored[k] for k in ("phase", "phases", "progress", "rows", "startedAt", "runId")})


def start_run(ctx: OperatorContext, body: dict[str, Any], plan: RunPlan, tenant: dict[str, Any]) -> None:
    """Record the run and create its credentials Secret, NetworkPolicy and Job (each owned by the run)."""
    with ctx.db.connect(autocommit=True) as conn:
        ensure_control_tables(conn, ctx.control)
        row = get_run(conn, ctx.control, plan.run_id)
        if row is None:
            try:
                insert_run(conn, ctx.control, RunStatus(plan.run_id, plan.domain, plan.pipeline, plan.mode), pid=0)
            except ActiveRunExists as exc:
                if exc.run_id == plan.run_id:  # a concurrent pass of this reconcile recorded it first
                    return
                message = f"waiting: tenant {plan.domain!r} has a run in progress ({exc.run_id}); this one starts when it ends"
                _patch(ctx, body, {"phase": "Pending", "runId": plan.run_id,
                                   "progress": {"current": 0, "total": 100, "message": message}})
                raise Retry(message, delay=ctx.run_interval) from None
        elif row["phase"] in TERMINAL:
            _patch(ctx, body, status_from_row(row))
            finalize_run(ctx, body)
            return
    try:
        data = credentials_data(plan, ctx.kube.get(SECRETS, plan.namespace, plan.credentials_secret))
    except SpecError as exc:
        _end(ctx, body, "Failed", "CREDENTIALS_MISSING", str(exc), plan.run_id)
        return
    owner = {"apiVersion": body.get("apiVersion") or "dataexplorer.io/v1alpha1", "kind": "MaterializationRun",
             "metadata": {"name": plan.name, "namespace": plan.namespace, "uid": plan.uid}}
    for resource, child in (
        (SECRETS, build_credentials_secret(plan, data)),
        (NETWORK_POLICIES, build_network_policy(plan, ctx.runner)),
        (JOBS, build_job(plan, ctx.runner)),  # last: its pod needs the other two
    ):
        kopf.adopt(child, owner=owner)
        try:
            ctx.kube.create(resource, plan.namespace, child)
        except KubeError as exc:
            if exc.status != 409:  # 409: created by an earlier pass of this same reconcile
                raise
    _patch(ctx, body, {
        "phase": "Pending", "runId": plan.run_id, "jobName": job_name(plan.name),
        "progress": {"current": 0, "total": 100, "message": f"Job {job_name(plan.name)} created; waiting for the runner to start"},
    })
    ctx.kube.patch(TENANT_SCHEMAS, plan.namespace, plan.tenant_schema,
                   {"status": {"phase": "Materializing", "message": run_in_progress(plan.name)}}, status=True)


def cancel_run(ctx: OperatorContext, body: dict[str, Any], plan: RunPlan, job: dict[str, Any] | None) -> None:
    """spec.cancel: end the row Cancelled first (the runner then cannot publish), then delete the Job."""
    with ctx.db.connect(autocommit=True) as conn:
        ensure_control_tables(conn, ctx.control)
        finish_run(conn, ctx.control, plan.run_id, "Cancelled", "CANCELLED", CANCELLED_MESSAGE)
        row = get_run(conn, ctx.control, plan.run_id)
    if job is not None:
        ctx.kube.delete(JOBS, plan.namespace, job_name(plan.name), propagation="Background")
        ctx.event(body, "JobDeleted", f"Job {job_name(plan.name)} deleted: the run was cancelled")
    if row is not None:
        _patch(ctx, body, status_from_row(row))  # Succeeded if it had already published
    else:
        _end(ctx, body, "Cancelled", "CANCELLED", CANCELLED_MESSAGE, None)
        return
    finalize_run(ctx, body)


def finalize_run(ctx: OperatorContext, body: dict[str, Any]) -> None:
    """After the end: no credential Secret outlives the run; the tenant's status catches up."""
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    if status.get("secretsRemovedAt"):
        return
    namespace, name = meta["namespace"], meta["name"]
    ctx.kube.delete(SECRETS, namespace, credentials_secret_name(name))
    ref = (spec.get("credentialsSecretRef") or {}).get("name")
    if ref and is_pass_through_secret(ctx.kube.get(SECRETS, namespace, ref), name):
        ctx.kube.delete(SECRETS, namespace, ref)
    tenant = ctx.kube.get(TENANT_SCHEMAS, namespace, spec.get("tenantSchema") or "") if spec.get("tenantSchema") else None
    if tenant is not None:
        if status.get("phase") == "Succeeded":
            ctx.kube.patch(TENANT_SCHEMAS, namespace, tenant["metadata"]["name"],
                           {"status": {"lastRun": name, "lastMaterializedAt": status.get("completedAt") or now_api_time()}}, status=True)
        try:
            reconcile_tenant(ctx, ctx.kube.get(TENANT_SCHEMAS, namespace, tenant["metadata"]["name"]) or tenant)
        except Retry:
            pass  # the tenant's own handlers retry
    _patch(ctx, body, {"secretsRemovedAt": now_api_time()})


def delete_run(ctx: OperatorContext, body: dict[str, Any]) -> None:
    """The resource is being deleted: stop its work and remove its children (the API server's
    garbage collector would too, through the owner references; this does not wait for it)."""
    meta = body.get("metadata") or {}
    namespace, name = meta["namespace"], meta["name"]
    if (body.get("status") or {}).get("phase") not in TERMINAL:
        try:
            run_id = run_id_for(meta)
        except SpecError:
            run_id = None
        if run_id:
            with ctx.db.connect(autocommit=True) as conn:
                ensure_control_tables(conn, ctx.control)
                finish_run(conn, ctx.control, run_id, "Cancelled", "CANCELLED", "the MaterializationRun was deleted")
    ctx.kube.delete(JOBS, namespace, job_name(name), propagation="Background")
    ctx.kube.delete(NETWORK_POLICIES, namespace, network_policy_name(name))
    ctx.kube.delete(SECRETS, namespace, credentials_secret_name(name))

