"""Running the dbt project in-process for one tenant.

The project is copied into the tenant's work directory (so dbt's partial
parsing is reused between runs) with one generated model per typed view. The
profile is generated at run time; the password travels only in an environment
variable that dbt scrubs from its logs. dbt keeps global state, so invocations
are serialised within a process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

_DBT_LOCK = threading.Lock()
_PASSWORD_ENV = "DBT_ENV_SECRET_DATA_EXPLORER_PASSWORD"
GENERATED_DIR = "generated"
_KEPT = ("target", "logs")  # dbt's partial-parse state and logs survive between runs


class TransformError(RuntimeError):
    code = "TRANSFORM_FAILED"

    def __init__(self, message: str, result: "TransformResult | None" = None):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class ModelResult:
    name: str
    status: str  # success, error, skipped
    seconds: float
    rows: int | None
    message: str | None = None


@dataclass
class TransformResult:
    models: list[ModelResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[ModelResult]:
        return [m for m in self.models if m.status != "success"]


@dataclass(frozen=True)
class DbtTarget:
    host: str
    port: str
    user: str
    password: str
    dbname: str
    schema: str  # where models are built: the tenant's build schema
    role: str  # the tenant's writer role
    sslmode: str = "prefer"
    application_name: str = "dbt"  # how dbt's sessions show in pg_stat_activity: a run finds and stops its own


def _first_line(value: object) -> str:
    text = str(value or "").strip()
    return text.splitlines()[0] if text else "no message"


def profile_yaml(target: DbtTarget, threads: int) -> str:
    """profiles.yml for one run. Pure; the password is referenced, never written."""
    output = {
        "type": "postgres",
        "host": target.host,
        "port": int(target.port),
        "user": target.user,
        "password": "{{ env_var('%s', '') }}" % _PASSWORD_ENV,
        "dbname": target.dbname,
        "schema": target.schema,
        "role": target.role,
        "sslmode": target.sslmode,
        "application_name": target.application_name,
        "threads": threads,
        "connect_timeout": 30,
    }
    return yaml.safe_dump({"data_explorer": {"target": "run", "outputs": {"run": output}}}, sort_keys=False)


def typed_view_model(view_name: str) -> str:
    """The generated model of one typed view. ``view_name`` is a derived identifier, safe as text."""
    if not view_name.replace("_", "").isalnum() or not view_name.isascii():
        raise ValueError(f"unsafe view name {view_name!r}")
    return "{{ config(materialized='view') }}\n{{ case_type_view('%s') }}\n" % view_name


def _project_items(source: Path):
    """The project's own files and folders, without dbt's state or installed packages."""
    return sorted(item for item in source.iterdir() if item.name not in _KEPT and item.name != "dbt_packages")


def project_digest(source: Path) -> str:
    """A digest of every file of the project, by path and content."""
    digest = hashlib.sha256()
    for top in _project_items(source):
        for path in sorted([top] if top.is_file() else (p for p in top.rglob("*") if p.is_file())):
            digest.update(str(path.relative_to(source)).encode() + b"\x00" + path.read_bytes() + b"\x00")
    return digest.hexdigest()


def _copy(source: Path, dest: Path) -> None:
    """Copy a file or folder of the project with modes from the umask, not the source's: an installed
    project is world-readable, the copy sits in the user's private data directory."""
    if source.is_dir():
        dest.mkdir()
        for child in source.iterdir():
            _copy(child, dest / child.name)
    else:
        shutil.copyfile(source, dest)


def prepare_project(source: Path, work_dir: Path, view_names: list[str], target: DbtTarget, threads: int) -> Path:
    """Copy the project into ``work_dir`` with the generated models and profile; return its path.

    Everything but dbt's own state is replaced, so a model removed from the
    project is not built from a stale copy."""
    project = work_dir / "project"
    project.mkdir(parents=True, exist_ok=True)
    for item in project.iterdir():  # a fresh copy each run; only dbt's own state is kept
        if item.name in _KEPT:
            continue
        if item.is_dir():
            shutil.rmtree(item)
        else:
            item.unlink()
    for item in _project_items(source):
        _copy(item, project / item.name)
    generated = project / "models" / GENERATED_DIR
    shutil.rmtree(generated, ignore_errors=True)
    generated.mkdir(parents=True)
    for name in view_names:
        (generated / f"{name}.sql").write_text(typed_view_model(name))
    profiles = project / "profiles.yml"
    profiles.write_text(profile_yaml(target, threads))
    profiles.chmod(0o600)
    return project


def run_dbt(
    project: Path,
    target: DbtTarget,
    variables: dict[str, object],
    on_model: Callable[[ModelResult, int, int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> TransformResult:
    """``dbt run`` in-process; returns each model's result. Raises TransformError if dbt itself fails."""
    from dbt.cli.main import dbtRunner

    started = time.monotonic()
    finished: list[ModelResult] = []
    state = {"total": 0}

    def callback(event) -> None:
        name = event.info.name
        if name == "ConcurrencyLine":
            state["total"] = int(event.data.node_count)
            if on_start:
                on_start(state["total"])
        elif name == "NodeFinished":
            info = event.data.run_result
            node = event.data.node_info
            if not node.unique_id.startswith("model."):
                return
            rows = None
            adapter_response = dict(info.adapter_response) if info.adapter_response else {}
            if adapter_response.get("rows_affected", -1) >= 0:
                rows = int(adapter_response["rows_affected"])
            result = ModelResult(node.node_name, info.status, round(info.execution_time, 3), rows, info.message or None)
            finished.append(result)
            if on_model:
                on_model(result, len(finished), state["total"])

    args = [
        "run",
        "--project-dir", str(project),
        "--profiles-dir", str(project),
        "--target-path", str(project / "target"),
        "--log-path", str(project / "logs"),
        "--vars", json.dumps(variables),
        "--no-use-colors",
        "--quiet",
        "--no-send-anonymous-usage-stats",
        "--no-version-check",
    ]
    env_backup = {k: os.environ.get(k) for k in (_PASSWORD_ENV, "DO_NOT_TRACK", "DBT_SEND_ANONYMOUS_USAGE_STATS")}
    with _DBT_LOCK:
        os.environ[_PASSWORD_ENV] = target.password
        os.environ["DO_NOT_TRACK"] = "1"
        os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
        try:
            outcome = dbtRunner(callbacks=[callback]).invoke(args)
        finally:
            for key, value in env_backup.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    result = TransformResult(finished, round(time.monotonic() - started, 3))
    if outcome.exception is not None and not isinstance(outcome.exception, Exception):
        raise outcome.exception  # a stop request (dbt catches BaseException) is not a dbt failure
    log_file = project / "logs" / "dbt.log"
    if outcome.exception is not None:
        raise TransformError(f"dbt could not run: {_first_line(outcome.exception)}; details in {log_file}", result)
    if not outcome.success or result.failed:
        first = result.failed[0] if result.failed else None
        detail = f"model {first.name}: {_first_line(first.message)}" if first else "no model failed"
        raise TransformError(f"dbt failed ({detail}); details in {log_file}", result)
    return result
