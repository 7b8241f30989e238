"""The runner child: carries out one run the gateway created (``data-explorer runner --run-id``)."""

from __future__ import annotations

import sys
import uuid

from data_explorer.config import load_settings
from data_explorer.pipelines.runner import RunRequest, materialize
from data_explorer.warehouse.database import open_database
from data_explorer.warehouse.runs import get_run


def run_worker(run_id: str) -> int:
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
        status = materialize(settings, db, request)
    print(f"run {run_id}: {status.phase}" + (f" ({status.error['code']}: {status.error['message']})" if status.error else ""))
    return 0 if status.phase == "Succeeded" else 1
