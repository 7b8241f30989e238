"""The runner: discover, load, transform, publish one tenant's data.

One program in both modes; it reports through a Reporter. Only the publish
transaction changes what agents see, so a run that fails, is cancelled
(SIGTERM) or is killed at any point leaves the published data as it was, and
the next run resumes loading from the last committed batch.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, Callable, Iterator

import psycopg
from psycopg import sql

from data_explorer.config import Settings
from data_explorer.control.states import set_tenant_phase
from data_explorer.loaders.commcare.applications import (
    build_metadata, fetch_applications, fetch_case_updates, form_definition_rows,
)
from data_explorer.loaders.commcare.client import CommCareClient
from data_explorer.loaders.commcare.credentials import Credential, credential_from_settings
from data_explorer.loaders.commcare.reconcile import SERVERS
from data_explorer.loaders.commcare.sources import LOADERS
from data_explorer.loaders.errors import IncompleteLoad, LoaderError
from data_explorer.pipelines.bindings import DISCOVER_LOADERS, check_bindings
from data_explorer.pipelines.loading import SourceProgress, load_source
from data_explorer.pipelines.registry import Pipeline, PipelineError, Registry
from data_explorer.pipelines.reporters import ControlTableReporter, FanOut, Reporter
from data_explorer.pipelines.reconcile import due, reconcile_source
from data_explorer.pipelines.status import RunStatus, incomplete_sources, utcnow
from data_explorer.transform.comments import table_comments
from data_explorer.transform.dbt import DbtTarget, ModelResult, TransformError, prepare_project, project_digest, run_dbt
from data_explorer.transform.increments import Plan, PlanUnavailable, check_keys, fingerprint, plan_from_manifest, published_relations
from data_explorer.transform.typed_views import plan_typed_views
from data_explorer.warehouse.batches import upsert_rows
from data_explorer.warehouse.control_tables import ensure_control_tables
from data_explorer.warehouse.increments import Published, apply_plan, database_now, read_published, save_published, source_generations
from data_explorer.warehouse.database import Database
from data_explorer.warehouse.locks import tenant_lock
from data_explorer.warehouse.metadata_store import save_metadata
from data_explorer.warehouse.naming import TenantNames, reserved_note
from data_explorer.warehouse.provisioning import provision_tenant
from data_explorer.warehouse.catalog import relation_counts
from data_explorer.warehouse.publish import LOCK_TIMEOUT, drop_build_schema, publish, reset_build_schema
from data_explorer.warehouse.raw_tables import ensure_raw_tables, read_case_updates
from data_explorer.warehouse.reconcile import mark_reconciled
from data_explorer.warehouse.secrets import SecretBox
from data_explorer.warehouse.statistics import analyze_columns, analyze_raw
from data_explorer.warehouse.runs import ActiveRunExists, RunAlreadyEnded, active_run, lock_unfinished_run, claim_run, fail_abandoned_runs, get_run, insert_run, save_run
from data_explorer.warehouse.storable import storable

log = logging.getLogger(__name__)

LOCK_WAIT = 10.0  # seconds a runner waits for the tenant lock (held briefly by a teardown) before giving up


class RunConflict(RuntimeError):
    code = "CONFLICT"


class RunCancelled(KeyboardInterrupt):
    """Raised in the runner when it is asked to stop (SIGTERM; Ctrl-C arrives as KeyboardInterrupt).

    A KeyboardInterrupt, because that is what the libraries stop on at once: psycopg cancels the
    query it is waiting for, and dbt cancels the queries of its models, where any other exception
    would wait for them to end (a long model, or one waiting for a lock, could take minutes)."""


@dataclass(frozen=True)
class RunRequest:
    domain: str
    pipeline: str = "commcare_sync"
    full: bool = False
    run_id: str | None = None
    reconcile: bool = False  # look for deleted records now, whenever the last look was


@contextmanager
def _tenant_lock(db: Database, control: str, domain: str, run_id: str) -> Iterator[None]:
    """Held for the whole run on its own session: released by PostgreSQL if the runner dies.
    Waits a little when no other run is recorded, since a teardown may hold it for a moment."""
    conn = db.connect(autocommit=True)
    try:
        other = active_run(conn, control, domain)
        wait = LOCK_WAIT if other is None or other == run_id else 0.0
        with tenant_lock(conn, domain, wait=wait) as got:
            if not got:
                raise RunConflict(f"a run for project space {domain!r} is already in progress; wait for it or cancel it")
            yield
    finally:
        conn.close()


def set_up_writer(conn: psycopg.Connection) -> None:
    """The settings of a session that loads batches."""
    conn.execute("SET TimeZone = 'UTC'")
    # A batch's rows and its checkpoint commit together, so a batch lost in a server crash is
    # simply loaded again by the next run: waiting for each commit to reach disk buys nothing.
    # Publishing, on another session, still waits.
    conn.execute("SET synchronous_commit = off")
    conn.commit()


class Cancellation:
    """A stop request (SIGTERM or Ctrl-C). Waits in the loaders wake on ``event``; the main
    thread gets RunCancelled at once, unless the publish transaction has begun, which is
    then allowed to finish (the data it publishes is complete)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.publishing = False
        self.stoppers: list[Callable[[], None]] = []  # stop work the exception cannot reach (dbt's sessions)

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def check(self) -> None:
        """RunCancelled if a stop was asked for while it could not be raised at once."""
        if self.requested:
            raise RunCancelled()

    def _handle(self, signum, frame) -> None:
        self.event.set()
        if not self.publishing:
            for stop in list(self.stoppers):
                try:
                    stop()
                except Exception:  # best effort: the exception below still ends the run
                    log.debug("stopping failed", exc_info=True)
            raise RunCancelled()

    @contextmanager
    def on_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach only the main thread; callers cancel through ``event``
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class Runner:
    def __init__(self, settings: Settings, db: Database, pipeline: Pipeline, names: TenantNames, status: RunStatus, reporter: Reporter):
        self.settings = settings
        self.db = db
        self.pipeline = pipeline
        self.names = names
        self.status = status
        self.reporter = reporter
        self.control = settings.control_schema
        self.metadata: dict[str, Any] = {}
        self.view_definitions: list[tuple] = []
        self.view_properties: list[tuple] = []
        self.view_names: list[str] = []
        self.discovered: list[list[tuple]] = []  # what discover wrote: part of the plan's fingerprint
        self.increments: tuple[datetime, Plan | None, str | None] | None = None  # (watermark, plan, why none) to publish

    def report(self, important: bool = False) -> None:
        self.reporter.report(self.status, important=important)

    def say(self, message: str) -> None:
        """What the run is doing while its progress stands still (the client waiting out a rate limit, the
        reconcile step looking for deletions): the progress message says so."""
        self.status.advance(self.status.progress["current"], message)
        self.report(important=True)

    def writer_connection(self) -> psycopg.Connection:
        conn = self.db.connect()
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self.names.writer_role)))
        set_up_writer(conn)
        return conn

    # -- phases -------------------------------------------------------------

    def discover(self, client: CommCareClient, writer: psycopg.Connection, full: bool = False) -> None:
        """Read the apps, and each form's XForm for which question saves which property (reusing what an
        incremental run read before at the same app version)."""
        started = time.monotonic()
        self.status.phases["discover"] = {"state": "running"}
        self.status.enter("Discovering", "reading app definitions")
        self.report(important=True)
        apps, replaced = storable(fetch_applications(client, self.names.domain))
        reuse = {} if full else read_case_updates(writer, self.names.raw_schema)

        def on_form(read: int) -> None:
            self.status.within("Discovering", 0.5, f"read the XML of {read} form(s)")
            self.report()

        updates, unread = fetch_case_updates(client, self.names.domain, apps, reuse, on_form)
        self.metadata = build_metadata(self.names.domain, apps, updates)
        self.metadata["warnings"] += unread
        note = reserved_note(self.names.domain, self.settings.control_schema)
        if note:
            self.metadata["warnings"].append(note)
        if replaced:
            self.metadata["warnings"].append(f"{replaced} characters PostgreSQL cannot store were replaced with U+FFFD")
        prefix = self.pipeline.case_type_views.prefix if self.pipeline.case_type_views else "case_"
        definitions, properties = plan_typed_views(self.metadata, prefix, {m.name for m in self.pipeline.models})
        if self.pipeline.case_type_views:
            self.view_definitions, self.view_properties = definitions, properties
            self.view_names = [row[1] for row in definitions]
        tables = {t.name: t for t in self.pipeline.discover.tables}
        produces = DISCOVER_LOADERS[self.pipeline.discover.loader]
        self.discovered = [definitions, properties, form_definition_rows(self.metadata)]
        with writer.transaction():
            for name, rows in zip(("case_type_definitions", "case_type_properties", "form_definitions"), self.discovered):
                writer.execute(sql.SQL("DELETE FROM {}.{}").format(sql.Identifier(self.names.raw_schema), sql.Identifier(name)))
                upsert_rows(writer, self.names.raw_schema, tables[name], produces[name], rows, 0)
        self.status.phases["discover"] = {
            "state": "done",
            "apps": len(self.metadata["apps"]),
            "case_types": len(self.metadata["case_types"]),
            "forms": len(self.metadata["forms"]),
            "warnings": self.metadata["warnings"],
            "seconds": round(time.monotonic() - started, 3),
        }
        self.status.within("Discovering", 1.0, f"found {len(self.metadata['case_types'])} case types")
        self.report(important=True)

    def load(self, client: CommCareClient, sessions: tuple[psycopg.Connection, ...], full: bool, reconcile: bool = False) -> None:
        cc = client.settings
        page_sizes = {"commcare.cases": cc.case_page_size, "commcare.forms": cc.form_page_size, "commcare.users": cc.user_page_size}
        self.status.enter("Loading", "loading")
        sources = self.pipeline.sources
        for source in sources:
            self.status.phases["load"][source.name] = {"state": "pending", "rows": 0}
        self.report(important=True)
        for index, source in enumerate(sources):
            loader = LOADERS[source.loader](client, self.names.domain, page_sizes[source.loader], lookback=timedelta(seconds=cc.lookback))
            entry = self.status.phases["load"][source.name]
            entry["state"] = "running"
            self.status.within("Loading", index / len(sources), f"loading {source.name}")
            self.report(important=True)

            def on_batch(p: SourceProgress, index: int = index, entry: dict = entry) -> None:
                entry.update(rows=p.rows, fetched=p.fetched, total=p.total, mode=p.mode, seconds=round(p.seconds, 3),
                             rate=round(p.fetched / p.seconds) if p.seconds > 0 else None)
                share = min(1.0, p.fetched / p.total) if p.total else 0.5
                self.status.within("Loading", (index + share) / len(sources), f"loading {source.name}: {p.rows:,} rows")
                self.report()

            result = load_source(sessions, self.names.raw_schema, source, loader, full=full, on_batch=on_batch)
            if result.full_pass and result.rows:  # the tables may be new or changed throughout
                analyze_raw(sessions[0], self.names.raw_schema, source.tables)
            entry.update(state="done", rows=result.rows, fetched=result.fetched, total=result.total, mode=result.mode,
                         deleted=result.deleted, replaced=result.replaced, seconds=round(result.seconds, 3), rate=None)
            if result.reread or not result.full_pass:
                entry.update(reread=result.reread, reread_new=result.reread_new)
            if result.counts is not None:
                entry["counts"] = result.counts.as_dict()
            self._reconcile(client, sessions[0], source, result, entry, page_sizes[source.loader], reconcile)
            self.status.within("Loading", (index + 1) / len(sources), f"loaded {source.name}: {result.rows:,} rows")
            self.report(important=True)
        short = incomplete_sources(self.status.phases["load"])  # this run's full passes, or the last ones
        if short and self.settings["DATA_EXPLORER_STRICT_COUNTS"]:
            raise IncompleteLoad(
                "the last full pass stored fewer records than CommCare reported (" + "; ".join(short.values())
                + "). Nothing was published, since DATA_EXPLORER_STRICT_COUNTS is on: run again with a full run; "
                "if the shortfall stays, report it with these counts"
            )

    def _reconcile(self, client: CommCareClient, conn: psycopg.Connection, source, result: SourceProgress, entry: dict,
                   page: int, asked: bool) -> None:
        """Remove the source's records CommCare has deleted: a full pass did; otherwise look when asked or due."""
        if source.loader not in SERVERS:
            return
        raw = self.names.raw_schema
        if result.full_pass:
            with conn.transaction():
                mark_reconciled(conn, raw, source.name)
            entry["reconcile"] = {"requests": 0, "removed": result.deleted, "complete": True}
            return
        interval = timedelta(hours=self.settings["DATA_EXPLORER_RECONCILE_HOURS"])
        if not asked and not due(conn, raw, source.name, interval, utcnow()):
            return
        self.say(f"looking for {source.name} deleted in CommCare")
        found = reconcile_source(conn, raw, source, SERVERS[source.loader](client, self.names.domain, page), page=page,
                                 max_requests=self.settings["DATA_EXPLORER_RECONCILE_MAX_REQUESTS"])
        entry["reconcile"] = found.as_dict()

    def _variables(self) -> dict[str, object]:
        prefix = self.pipeline.case_type_views.prefix if self.pipeline.case_type_views else "case_"
        return {"raw_schema": self.names.raw_schema, "case_type_view_prefix": prefix}

    @cached_property
    def build_fingerprint(self) -> str:
        """Everything the published SQL was compiled from; a plan is used only while it is unchanged.
        Read after discover, which fixes the last of it."""
        return fingerprint([
            project_digest(self.settings.dbt_project_dir), self.pipeline.model_dump(mode="json"), self._variables(),
            self.view_names, self.discovered, self.db.params()["dbname"], self.names.schema,
        ])

    def _why_not_incremental(self, conn: psycopg.Connection, published: Published | None) -> str | None:
        """None when the published plan can apply this run's changes; otherwise why a full build is needed."""
        if self.status.mode == "full":
            return "a full run was asked for"
        if published is None:
            return "nothing has been published yet"
        if published.plan is None:
            return f"the last full build left no plan: {published.reason}"
        row = conn.execute(
            sql.SQL("SELECT last_run_id::text FROM {}.tenants WHERE domain = %s").format(sql.Identifier(self.control)),
            (self.names.domain,),
        ).fetchone()
        if row is None or row[0] != published.run_id:
            return "the published tables are not those of the run that left the plan"
        if published.fingerprint != self.build_fingerprint:
            return "the dbt project, the pipeline or the app structure changed since the last publish"
        keyed = published.plan.keyed_tables
        now = source_generations(conn, self.names.raw_schema)
        for source in self.pipeline.sources:
            if keyed & {t.name for t in source.tables} and now.get(source.name) != published.generations.get(source.name):
                return f"{source.name} had rows removed since the last publish (a full pass, or records deleted in CommCare)"
        return None

    def apply_changes(self, cancellation: "Cancellation") -> bool:
        """Bring the published tables up to date with the plan the last full build left, in the transaction
        that publishes the run. False, with the reason in the transform phase, when dbt must build everything.

        A stop request rolls the changes back until the run is being recorded; from then on the commit
        is allowed to happen, as a publish is."""
        started = time.monotonic()
        transform = self.status.phases["transform"] = {"state": "running", "mode": "incremental", "models": {}, "total": None}
        with self.db.connect(autocommit=True) as admin:
            try:
                published = read_published(admin, self.names.raw_schema)
                reason = self._why_not_incremental(admin, published)
            except PlanUnavailable as exc:
                reason = str(exc)
            if reason is None:
                drop_build_schema(admin, self.names)  # what a killed full build left: no run builds there now
                self.status.enter("Transforming", "applying the changes to the published tables")
                plan = published.plan
                transform["total"] = len(plan.steps)
                self.report(important=True)
                restore = self._restorer()

                def undo() -> None:
                    restore()
                    cancellation.publishing = False

                try:
                    with admin.transaction():
                        admin.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
                        watermark = database_now(admin)
                        if watermark < published.watermark:
                            raise PlanUnavailable("the database clock is behind the time of the last publish")
                        for result in apply_plan(admin, self.names, plan, published.watermark):
                            transform["models"][result.name] = {"state": result.status, "rows": result.rows, "seconds": result.seconds}
                        transform.update(state="done", seconds=round(time.monotonic() - started, 3))
                        self.increments = (watermark, plan, None)
                        cancellation.publishing = True
                        cancellation.check()
                        self._finish(admin)
                except PlanUnavailable as exc:
                    undo()
                    reason = str(exc)
                except psycopg.Error as exc:
                    undo()
                    if admin.broken:  # the session is gone: the run fails as with any lost connection
                        raise
                    reason = f"PostgreSQL: {first_line(exc)}"
                except BaseException:
                    undo()
                    raise
        if reason is None:
            self.report(important=True)
            return True
        self.status.phases["transform"] = {"state": "pending", "mode": "full", "reason": reason, "models": {}, "total": None}
        return False

    def transform(self, cancellation: Cancellation) -> None:
        self.status.enter("Transforming", "building tables with dbt")
        transform = self.status.phases["transform"]
        transform.update(state="running", mode="full")
        self.report(important=True)
        with self.db.connect(autocommit=True) as admin:
            reset_build_schema(admin, self.names)
            watermark = database_now(admin)  # raw rows loaded from now on are not in what dbt builds
        params = self.db.params()
        target = DbtTarget(params["host"], params["port"], params["user"], params["password"], params["dbname"],
                           self.names.build_schema, self.names.writer_role, params["sslmode"],
                           f"data-explorer dbt {self.status.run_id}")
        work = self.settings.home / "work" / self.names.schema
        project = prepare_project(self.settings.dbt_project_dir, work, self.view_names, target, threads=2)

        def on_start(total: int) -> None:
            transform["total"] = total
            self.report(important=True)

        def on_model(result: ModelResult, done: int, total: int) -> None:
            transform["models"][result.name] = {"state": result.status, "rows": result.rows, "seconds": result.seconds}
            self.status.within("Transforming", done / max(total, 1), f"built {result.name} ({done} of {total})")
            self.report()

        def stop_dbt() -> None:
            """dbt waits for its models' queries to end before it stops, and cannot always cancel them
            itself (its sessions act as the writer role): end its sessions, so that a stop is prompt."""
            with self.db.connect(autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                    (target.application_name,),
                )

        cancellation.stoppers.append(stop_dbt)
        try:
            result = run_dbt(project, target, self._variables(), on_model=on_model, on_start=on_start)
        except TransformError:
            transform["state"] = "failed"
            raise
        finally:
            cancellation.stoppers.remove(stop_dbt)
        transform.update(state="done", seconds=result.seconds)
        try:
            manifest = json.loads((project / "target" / "manifest.json").read_bytes())
            plan = plan_from_manifest(manifest, published_relations(manifest, target.dbname, target.schema, self.names.schema))
            check_keys(plan, self.pipeline.raw_tables)
            self.increments = (watermark, plan, None)
        except (OSError, ValueError) as exc:  # PlanUnavailable is a ValueError; the next run builds in full
            self.increments = (watermark, None, str(exc))
        else:
            with self.writer_connection() as writer:  # the columns the next run's plan looks rows up by
                for step in plan.steps:
                    if step.keyed:
                        analyze_columns(writer, self.names.build_schema, step.name, [column for column, _ in step.keys])
        self.status.within("Transforming", 1.0, "publishing")
        self.report(important=True)

    def _finish(self, conn: psycopg.Connection) -> None:
        """The end of the publishing transaction: counts, metadata, what was published, the run's status."""
        self.status.phases["publish"] = {"relations": relation_counts(conn, self.names.schema)}
        save_metadata(conn, self.control, self.names.domain, self.pipeline.provider, self.metadata, self.status.run_id)
        watermark, plan, reason = self.increments
        save_published(conn, self.names.raw_schema, Published(
            self.status.run_id, self.build_fingerprint, watermark, source_generations(conn, self.names.raw_schema), plan, reason,
        ))
        conn.execute(
            sql.SQL(
                "UPDATE {}.tenants SET last_materialized_at = now(), last_run_id = %s, phase = 'Active',"
                " updated_at = now() WHERE domain = %s"
            ).format(sql.Identifier(self.control)),
            (self.status.run_id, self.names.domain),
        )
        if not lock_unfinished_run(conn, self.control, self.status.run_id):  # ended from outside: publish nothing
            raise RunAlreadyEnded(f"run {self.status.run_id} was ended from outside before it could publish")
        self.status.enter("Succeeded", "published")
        save_run(conn, self.control, self.status)

    def _restorer(self) -> Callable[[], None]:
        """Succeeded is entered inside the publishing transaction, as the run's row is written there:
        the returned function puts the run back where it was, for when that transaction does not commit."""
        before = (self.status.phase, dict(self.status.progress), self.status.completed_at)

        def restore() -> None:
            self.status.phase, self.status.progress, self.status.completed_at = before
            self.status.phases.pop("publish", None)

        return restore

    def publish(self) -> None:
        comments = table_comments(self.pipeline, self.view_definitions, self.view_properties)
        restore = self._restorer()
        try:
            with self.db.connect(autocommit=True) as admin:
                publish(admin, self.names, comments, self._finish)
        except BaseException:
            restore()
            raise
        self.report(important=True)


def _error_code(exc: BaseException) -> str:
    return getattr(exc, "code", None) or "INTERNAL_ERROR"


def materialize(
    settings: Settings,
    db: Database,
    request: RunRequest,
    extra_reporters: tuple[Reporter, ...] = (),
    credential: Credential | None = None,
    on_refresh: Callable[[Credential], None] | None = None,
) -> RunStatus:
    """Run one materialization to the end; return its final status (Succeeded, Failed or Cancelled).

    Raises RunConflict before starting when another run holds the tenant, and
    SettingsError/PipelineError for configuration that cannot work at all.
    """
    registry = Registry.from_directory(settings.pipelines_dir)
    pipeline = registry.get(request.pipeline)
    check_bindings(pipeline, registry.file_name(request.pipeline))
    cc = settings.require_commcare(credential=credential is None)
    names = TenantNames.for_domain(request.domain, settings.role_prefix, settings.control_schema)
    status = RunStatus(request.run_id or str(uuid.uuid4()), request.domain, pipeline.name, "full" if request.full else "incremental")
    control = settings.control_schema
    with ExitStack() as stack:
        admin = stack.enter_context(db.connect(autocommit=True))
        ensure_control_tables(admin, control)
        stack.enter_context(_tenant_lock(db, control, request.domain, status.run_id))
        fail_abandoned_runs(admin, control, request.domain, keep=status.run_id)
        provision_tenant(admin, names, control, SecretBox.from_settings(settings))
        if request.run_id:
            if claim_run(admin, control, request.run_id) is None:
                raise RunConflict(f"run {request.run_id} is not waiting to start (unknown, cancelled or already started)")
            save_run(admin, control, status)
        else:
            try:
                insert_run(admin, control, status)
            except ActiveRunExists as exc:
                raise RunConflict(str(exc)) from None
        set_tenant_phase(admin, control, request.domain, "Materializing")
        # the caller's reporters (a terminal, a test) first: they read the status in memory at once, before
        # another thread can move it on while the control table's write takes its milliseconds
        reporter = FanOut(*extra_reporters, ControlTableReporter(db, control))
        stack.callback(reporter.close)
        runner = Runner(settings, db, pipeline, names, status, reporter)
        cancellation = Cancellation()
        try:
            with cancellation.on_signals():
                writer = stack.enter_context(runner.writer_connection())
                ensure_raw_tables(writer, names.raw_schema, pipeline.raw_tables)  # owned by the writer, like all it loads
                client = stack.enter_context(
                    CommCareClient(
                        cc, credential or credential_from_settings(cc), request.domain,
                        stop=cancellation.event, on_refresh=on_refresh, on_wait=runner.say,
                    )
                )
                runner.discover(client, writer, request.full)
                second = stack.enter_context(runner.writer_connection())  # batches overlap in PostgreSQL
                runner.load(client, (writer, second), request.full, request.reconcile)
                applied = runner.apply_changes(cancellation)
                if not applied:
                    cancellation.check()
                    runner.transform(cancellation)
                    cancellation.publishing = True
                    cancellation.check()
                    runner.publish()
        except BaseException as exc:  # the run must end with a status, whatever broke
            if status.phase == "Succeeded":  # committed: what broke after it (a last report) changes nothing
                log.warning("run %s published, then: %s: %s", status.run_id, type(exc).__name__, first_line(exc))
            else:
                _record_failure(status, exc, cancellation.requested)
            if not isinstance(exc, (Exception, RunCancelled, KeyboardInterrupt)):
                raise
        if status.phase != "Succeeded":
            try:
                with db.connect(autocommit=True) as cleanup:
                    _adopt_committed_success(cleanup, control, status)
                    drop_build_schema(cleanup, names)
                    set_tenant_phase(cleanup, control, request.domain, "Active")  # what was published stays
            except psycopg.Error:
                pass  # the next run drops it anyway
            reporter.report(status, important=True)
    return status


def _adopt_committed_success(conn: psycopg.Connection, control: str, status: RunStatus) -> None:
    """A connection lost at COMMIT hides whether the publishing transaction committed; the run's
    row, written in that transaction, says so."""
    row = get_run(conn, control, status.run_id)
    if row is not None and row["phase"] == "Succeeded":
        status.phase, status.error = "Succeeded", None
        status.progress, status.completed_at, status.phases = row["progress"], row["completed_at"], row["phases"]


def _record_failure(status: RunStatus, exc: BaseException, cancelled: bool) -> None:
    if cancelled or isinstance(exc, (RunCancelled, KeyboardInterrupt, RunAlreadyEnded)):
        status.fail("CANCELLED", "the run was cancelled; the published data is unchanged", phase="Cancelled")
    elif isinstance(exc, (LoaderError, TransformError, PipelineError)):
        status.fail(_error_code(exc), str(exc))
    elif isinstance(exc, psycopg.Error):
        status.fail("DATABASE_ERROR", f"PostgreSQL: {first_line(exc)}")
    else:
        log.error("run %s failed", status.run_id, exc_info=exc)
        status.fail("INTERNAL_ERROR", f"{type(exc).__name__}: {first_line(exc)}")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
