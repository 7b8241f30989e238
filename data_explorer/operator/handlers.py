"""The kopf wiring: every change, resume and periodic check of a resource goes to its one
reconcile function; deletion goes through a finalizer. Nothing else happens here."""

from __future__ import annotations

import logging
from typing import Any, Callable

import kopf
import psycopg

from data_explorer.kube.api import KubeError
from data_explorer.kube.resources import GROUP, MATERIALIZATION_RUNS, TENANT_SCHEMAS, VERSION, Resource
from data_explorer.operator.context import OperatorContext
from data_explorer.operator.runs import delete_run, reconcile_run
from data_explorer.operator.tenants import Retry, delete_tenant, expire_if_idle, reconcile_tenant
from data_explorer.pipelines.status import TERMINAL
from data_explorer.warehouse.database import DatabaseUnavailable

log = logging.getLogger(__name__)

FINALIZER = f"{GROUP}/cleanup"
TENANTS = (GROUP, VERSION, "tenantschemas")
RUNS = (GROUP, VERSION, "materializationruns")


def _guarded(fn: Callable[[OperatorContext, dict[str, Any]], Any], ctx: OperatorContext, body: Any, resource: Resource) -> Any:
    """Run a reconcile step on the resource's latest state, one pass at a time per resource;
    what may pass (API or database trouble) becomes a retry."""
    plain = _plain(body)
    meta = plain.get("metadata") or {}
    try:
        with ctx.serial(str(meta.get("uid") or meta.get("name"))):
            # the body kopf hands over may predate the previous pass's status patch
            latest = ctx.kube.get(resource, meta["namespace"], meta["name"])
            return fn(ctx, latest if latest is not None else plain)
    except Retry as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from None
    except (KubeError, psycopg.OperationalError, DatabaseUnavailable) as exc:
        raise kopf.TemporaryError(f"{type(exc).__name__}: {exc}", delay=10) from None


def _plain(body: Any) -> dict[str, Any]:
    """A kopf Body as a plain, mutable dict (it is a read-only view of the latest state)."""
    import copy

    return copy.deepcopy(dict(body))


def _unfinished_run(status: Any, **_: Any) -> bool:
    return (status or {}).get("phase") not in TERMINAL or not (status or {}).get("secretsRemovedAt")


def build_registry(ctx: OperatorContext, *, login: Callable[..., Any] | None = None) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key="last-handled-configuration")
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 300
        # one namespace, named up front: no cluster-wide listing of namespaces or CRDs (and no RBAC for it)
        settings.scanning.disabled = True

    @kopf.on.login(registry=registry)
    def authenticate(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if login is not None:
            return login(**kwargs)
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.create(*TENANTS, registry=registry)
    @kopf.on.resume(*TENANTS, registry=registry)
    @kopf.on.update(*TENANTS, registry=registry)
    def tenant_changed(body: Any, **_: Any) -> None:
        _guarded(reconcile_tenant, ctx, body, TENANT_SCHEMAS)

    @kopf.timer(*TENANTS, interval=ctx.tenant_interval, initial_delay=ctx.tenant_interval, registry=registry)
    def tenant_check(body: Any, **_: Any) -> None:
        if not _guarded(expire_if_idle, ctx, body, TENANT_SCHEMAS):
            _guarded(reconcile_tenant, ctx, body, TENANT_SCHEMAS)

    @kopf.on.delete(*TENANTS, registry=registry)
    def tenant_deleted(body: Any, **_: Any) -> None:
        _guarded(delete_tenant, ctx, body, TENANT_SCHEMAS)

    @kopf.on.create(*RUNS, registry=registry)
    @kopf.on.resume(*RUNS, registry=registry)
    @kopf.on.update(*RUNS, registry=registry)
    def run_changed(body: Any, **_: Any) -> None:
        _guarded(reconcile_run, ctx, body, MATERIALIZATION_RUNS)

    @kopf.timer(*RUNS, interval=ctx.run_interval, when=_unfinished_run, registry=registry)
    def run_check(body: Any, **_: Any) -> None:
        _guarded(reconcile_run, ctx, body, MATERIALIZATION_RUNS)

    @kopf.on.delete(*RUNS, registry=registry)
    def run_deleted(body: Any, **_: Any) -> None:
        _guarded(delete_run, ctx, body, MATERIALIZATION_RUNS)

    def seen(prefix: str):
        def handler(body: Any, type: str | None = None, **_: Any) -> None:
            # every watch event, status changes included: phases a runner writes get their Event here
            if type == "DELETED":
                ctx.forget(_plain(body))
            elif body.get("metadata"):
                ctx.announce(_plain(body), prefix)
        return handler

    kopf.on.event(*RUNS, registry=registry, id="run_seen")(seen("Run"))
    kopf.on.event(*TENANTS, registry=registry, id="tenant_seen")(seen("Tenant"))

    return registry
