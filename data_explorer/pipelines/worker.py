"""The runner child: carries out one run the gateway created (``data-explorer runner --run-id``)."""

from __future__ import annotations

import re
import sys
import uuid

from data_explorer.config import load_settings
from data_explorer.pipelines.runner import RunRequest, first_line, materialize
from data_explorer.warehouse.database import open_database
from data_explorer.warehouse.credentials import (
    CredentialNotFound,
    delete_run_credential,
    load_run_credential,
    store_run_credential,
)
from data_explorer.warehouse.runs import finish_run, get_run
from data_explorer.warehouse.secrets import SecretBox


def _resource_reporters(kubernetes_run: str | None) -> tuple:
    """On Kubernetes the run's MaterializationRun status is patched as well as its row."""
    if not kubernetes_run:
        return ()
    from data_explorer.kube.api import KubeApi
    from data_explorer.kube.reporter import ResourceStatusReporter

    namespace, _, name = kubernetes_run.partition("/")
    return (ResourceStatusReporter(KubeApi.from_environment(), namespace, name),)


def run_worker(run_id: str, kubernetes_run: str | None = None) -> int:
    if kubernetes_run is not None and not re.fullmatch(r"[a-z0-9-]{1,63}/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", kubernetes_run):
        print(f"data-explorer runner: --kubernetes-run {kubernetes_run!r} must be NAMESPACE/NAME", file=sys.stderr)
        return 2
    try:
        run_id = str(uuid.UUID(run_id))
    except ValueError:
        print(f"data-explorer runner: {run_id!r} is not a run id", file=sys.stderr)
        return 2
    settings = load_settings()
    with open_database(settings, owner=False) as db:
        with db.connect(autocommit=True) as conn:
            row = get_run(conn, settings.control_schema, run_id)
        if row is None:
            print(f"data-explorer runner: no run {run_id}", file=sys.stderr)
            return 2
        request = RunRequest(row["domain"], row["pipeline"], row["mode"] == "full", run_id)
        box = SecretBox.from_settings(settings)
        with db.connect(autocommit=True) as conn:
            try:
                credential = load_run_credential(conn, settings.control_schema, run_id, box)
            except CredentialNotFound:
                credential = None  # started with the runner's own settings (the CLI, or stdio)

        def keep_refreshed(renewed) -> None:
            with db.connect(autocommit=True) as conn:
                store_run_credential(conn, settings.control_schema, run_id, renewed, box)

        try:
            status = materialize(settings, db, request, extra_reporters=_resource_reporters(kubernetes_run),
                                 credential=credential, on_refresh=keep_refreshed if credential else None)
        except Exception as exc:  # refused before its phases began: the run's row says why
            code, message = getattr(exc, "code", None) or "INTERNAL_ERROR", first_line(exc)
            with db.connect(autocommit=True) as conn:
                finish_run(conn, settings.control_schema, run_id, "Failed", code, message)
            print(f"run {run_id}: Failed ({code}: {message})")
            return 1
        finally:
            if credential is not None:
                with db.connect(autocommit=True) as conn:
                    delete_run_credential(conn, settings.control_schema, run_id)  # no secret outlives its run
    print(f"run {run_id}: {status.phase}" + (f" ({status.error['code']}: {status.error['message']})" if status.error else ""))
    return 0 if status.phase == "Succeeded" else 1
