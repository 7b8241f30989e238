"""Provisioning, checkpointed loading and atomic publishing against the real PostgreSQL."""

from __future__ import annotations

import dataclasses
import secrets
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from data_explorer.loaders.batch import Batch
from data_explorer.loaders.commcare.forms import BLOCK_COLUMNS, FORM_COLUMNS, block_rows, form_row
from data_explorer.loaders.commcare.users import USER_COLUMNS
from data_explorer.loaders.errors import LoaderError
from data_explorer.pipelines.loading import load_source
from data_explorer.pipelines.registry import Registry
from data_explorer.warehouse.control_tables import ensure_control_tables
from data_explorer.warehouse.locks import tenant_lock, try_lock, unlock
from data_explorer.warehouse.naming import TenantNames
from data_explorer.warehouse.provisioning import TenantNameConflict, provision_tenant, teardown_tenant
from data_explorer.warehouse.publish import publish, reset_build_schema
from data_explorer.warehouse.raw_tables import ensure_raw_tables

PIPELINE = Registry.from_directory(Path(__file__).resolve().parents[2] / "pipelines").get("commcare_sync")
CONTROL = "data_explorer"


@pytest.fixture
def tenant(conn, session_tag, box):
    ensure_control_tables(conn, CONTROL)
    names = TenantNames.for_domain(f"w-{secrets.token_hex(3)}", session_tag)
    provision_tenant(conn, names, CONTROL, box)
    ensure_raw_tables(conn, names.raw_schema, PIPELINE.raw_tables)
    yield names
    teardown_tenant(conn, names, CONTROL)


class ListLoader:
    """A source that serves fixed pages of user records and remembers how it was asked."""

    produces = {"users": USER_COLUMNS}

    def __init__(self, pages, fail_after=None):
        self.pages, self.fail_after, self.asked = pages, fail_after, []

    def batches(self, cursor):
        self.asked.append(cursor)
        start = cursor["page"] if cursor else 0
        for index in range(start, len(self.pages)):
            if self.fail_after is not None and index >= self.fail_after:
                raise RuntimeError("source broke")
            rows = [_user(u) for u in self.pages[index]]
            yield Batch({"users": rows}, [], {"page": index + 1}, len(rows), None)


def _user(user_id, name="x"):
    return (user_id, name, None, None, None, None, "[]", "[]", None, "[]", "{}", "mobile", True, None)


def _users(conn, names):
    return dict(conn.execute(sql.SQL("SELECT user_id, username FROM {}.users").format(sql.Identifier(names.raw_schema))).fetchall())


def test_provisioning_is_idempotent_and_refuses_schema_clashes(conn, tenant, session_tag, box):
    provision_tenant(conn, tenant, CONTROL, box)  # again: nothing changes
    roles = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (f"{session_tag}\\_{tenant.schema}%",))}
    assert roles == {tenant.reader_role, tenant.writer_role}
    # names are one to one with domains; should two ever meet, the second is refused
    clash = dataclasses.replace(TenantNames.for_domain(f"other-{tenant.domain}", session_tag), schema=tenant.schema)
    with pytest.raises(TenantNameConflict, match="already uses"):
        provision_tenant(conn, clash, CONTROL, box)


def test_a_failed_load_keeps_every_committed_batch_and_resumes_after_it(db, conn, tenant):
    source = PIPELINE.source("users")
    pages = [[f"u{p}{i}" for i in range(3)] for p in range(4)]
    with db.connect() as writer:
        with pytest.raises(RuntimeError, match="source broke"):
            load_source((writer,), tenant.raw_schema, source.model_copy(update={"incremental": True}), ListLoader(pages, fail_after=2), full=False, on_batch=lambda p: None)
    assert len(_users(conn, tenant)) == 6  # two batches committed with their checkpoint
    resumed = ListLoader(pages)
    with db.connect() as writer:
        result = load_source((writer,), tenant.raw_schema, source.model_copy(update={"incremental": True}), resumed, full=False, on_batch=lambda p: None)
    assert resumed.asked == [{"page": 2}]  # the interrupted full pass went on from its checkpoint
    assert result.mode == "full (resumed)" and result.rows == 6
    assert len(_users(conn, tenant)) == 12


def test_a_full_pass_removes_what_the_source_no_longer_has(db, conn, tenant):
    source = PIPELINE.source("users")  # not incremental: every run is a full pass
    with db.connect() as writer:
        load_source((writer,), tenant.raw_schema, source, ListLoader([["a", "b"], ["c"]]), full=False, on_batch=lambda p: None)
        result = load_source((writer,), tenant.raw_schema, source, ListLoader([["a", "c"]]), full=False, on_batch=lambda p: None)
    assert result.deleted == 1
    assert set(_users(conn, tenant)) == {"a", "c"}


def test_a_resumed_full_pass_still_removes_what_the_source_no_longer_has(db, conn, tenant):
    source = PIPELINE.source("users")
    with db.connect() as writer:
        load_source((writer,), tenant.raw_schema, source, ListLoader([["a", "b"], ["c"]]), full=False, on_batch=lambda p: None)
        with pytest.raises(RuntimeError, match="source broke"):
            load_source((writer,), tenant.raw_schema, source, ListLoader([["a"], ["d"]], fail_after=1), full=False, on_batch=lambda p: None)
        result = load_source((writer,), tenant.raw_schema, source, ListLoader([["a"], ["d"]]), full=False, on_batch=lambda p: None)
    assert result.mode == "full (resumed)" and result.deleted == 2
    assert set(_users(conn, tenant)) == {"a", "d"}


def test_repeats_within_a_batch_keep_the_last_version(db, conn, tenant):
    class Repeating:
        produces = ListLoader.produces

        def batches(self, cursor):
            yield Batch({"users": [_user("a", "old"), _user("b"), _user("a", "new")]}, [], None, 3, None)

    with db.connect() as writer:
        result = load_source((writer,), tenant.raw_schema, PIPELINE.source("users"), Repeating(), full=False, on_batch=lambda p: None)
    assert result.rows == 2
    assert _users(conn, tenant)["a"] == "new"


def test_keys_postgres_cannot_store_are_replaced_in_lookups_too(db, conn, tenant):
    class Unstorable:
        produces = ListLoader.produces

        def batches(self, cursor):
            yield Batch({"users": [_user("a\x00b", "x"), _user("c\ud800", "y")]}, [], None, 2, None)
            yield Batch({"users": [_user("a\x00b", "z")]}, [], None, 1, None)  # upserted over the first

    with db.connect() as one, db.connect() as two:
        result = load_source((one, two), tenant.raw_schema, PIPELINE.source("users"), Unstorable(), full=False, on_batch=lambda p: None)
    assert _users(conn, tenant) == {"a\ufffdb": "z", "c\ufffd": "y"}
    assert result.rows == 3 and result.replaced == 3


class VersionLoader(ListLoader):
    """Pages of (user id, name); a name of None makes a value PostgreSQL refuses."""

    def batches(self, cursor):
        start = cursor["page"] if cursor else 0
        for index in range(start, len(self.pages)):
            rows = [_user(u, n) if n is not None else (u, "x", None, None, None, None, "not json", "[]", None, "[]", "{}")
                    for u, n in self.pages[index]]
            yield Batch({"users": rows}, [], {"page": index + 1}, len(rows), None)


def _checkpoint(conn, names):
    return conn.execute(sql.SQL("SELECT cursor FROM {}._sync_state WHERE source = 'users'").format(
        sql.Identifier(names.raw_schema))).fetchone()[0]


def test_two_sessions_write_batches_that_share_keys_in_order(db, conn, tenant):
    source = PIPELINE.source("users").model_copy(update={"incremental": True})
    # "a" is in two pages of every three: consecutive pages share it, and the pages between them do not
    pages = [[("a", f"v{p}"), (f"u{p}", "x")] if p % 3 != 2 else [(f"u{p}", "x"), (f"w{p}", "y")] for p in range(30)]
    seen = []
    with db.connect() as one, db.connect() as two:
        result = load_source((one, two), tenant.raw_schema, source, VersionLoader(pages), full=False,
                             on_batch=lambda p: seen.append(p.fetched))
    users = _users(conn, tenant)
    assert users["a"] == "v28"  # the last page that wrote it
    assert len(users) == 1 + 30 + 10 and result.rows == 60
    assert seen == sorted(seen) and seen[-1] == 60  # progress in the order of the pages
    assert _checkpoint(conn, tenant) == {"page": 30}


def test_with_two_sessions_a_refused_batch_keeps_exactly_the_batches_before_it(db, conn, tenant):
    source = PIPELINE.source("users").model_copy(update={"incremental": True})
    pages = [[(f"u{p}{i}", "x") for i in range(3)] for p in range(6)]
    pages[3][1] = ("bad", None)
    with db.connect() as one, db.connect() as two:
        with pytest.raises(LoaderError, match="refused a value"):
            load_source((one, two), tenant.raw_schema, source, VersionLoader(pages), full=False, on_batch=lambda p: None)
    assert set(_users(conn, tenant)) == {f"u{p}{i}" for p in range(3) for i in range(3)}  # nothing after it
    assert _checkpoint(conn, tenant) == {"page": 3}


def _form(form_id, *case_ids):
    blocks = [{"@case_id": c, "update": {"n": form_id}} for c in case_ids]
    return {"id": form_id, "indexed_on": "2024-01-01T00:00:00Z", "metadata": {},
            "form": {"@xmlns": "x", "@name": "f", "group": {"case": blocks}}}


class FormLoader:
    """Pages of forms, each page one batch, as the forms source writes them."""

    produces = {"forms": FORM_COLUMNS, "form_case_blocks": BLOCK_COLUMNS}

    def __init__(self, pages):
        self.pages = pages

    def batches(self, cursor):
        for page in self.pages:
            blocks = [row for form in page for row in block_rows(form["id"], form["form"])]
            yield Batch({"forms": [form_row(f) for f in page], "form_case_blocks": blocks}, [f["id"] for f in page], None, len(page), None)


def _blocks(conn, names):
    rows = conn.execute(sql.SQL("SELECT form_id, case_id FROM {}.form_case_blocks").format(sql.Identifier(names.raw_schema)))
    return sorted(rows.fetchall())


@pytest.mark.parametrize("sessions", [1, 2])
def test_a_form_sent_again_replaces_its_case_blocks_and_new_forms_keep_theirs(db, conn, tenant, sessions):
    source = PIPELINE.source("forms")
    first = [[_form("f1", "c1", "c2"), _form("f2", "c3")], [_form("f3", "c4")]]
    # f1 again with one block, beside a form never seen; then f3 with none, on its own
    second = [[_form("f4", "c5"), _form("f1", "c9")], [_form("f3")]]
    with db.connect() as one, db.connect() as two:
        writers = (one, two)[:sessions]
        load_source(writers, tenant.raw_schema, source, FormLoader(first), full=True, on_batch=lambda p: None)
        assert _blocks(conn, tenant) == [("f1", "c1"), ("f1", "c2"), ("f2", "c3"), ("f3", "c4")]
        load_source(writers, tenant.raw_schema, source, FormLoader(second), full=False, on_batch=lambda p: None)
    assert _blocks(conn, tenant) == [("f1", "c9"), ("f2", "c3"), ("f4", "c5")]


@pytest.mark.parametrize("sessions", [1, 2])
def test_a_form_sent_again_within_a_first_pass_keeps_only_its_last_case_blocks(db, conn, tenant, sessions):
    # a first pass writes its batches unchecked; the repeat of f1 is caught by the keys and written again, checked
    pages = [[_form("f1", "c1", "c2"), _form("f2", "c3")], [_form("f4", "c5")], [_form("f1", "c9")]]
    with db.connect() as one, db.connect() as two:
        result = load_source((one, two)[:sessions], tenant.raw_schema, PIPELINE.source("forms"), FormLoader(pages), full=True,
                             on_batch=lambda p: None)
    assert _blocks(conn, tenant) == [("f1", "c9"), ("f2", "c3"), ("f4", "c5")]
    assert result.rows == 4
    forms = conn.execute(sql.SQL("SELECT count(*) FROM {}.forms").format(sql.Identifier(tenant.raw_schema))).fetchone()
    assert forms == (3,)


def test_publish_swaps_atomically_and_grants_only_the_reader(conn, tenant):
    def build(value):
        reset_build_schema(conn, tenant)
        conn.execute(sql.SQL("CREATE TABLE {}.t (v int)").format(sql.Identifier(tenant.build_schema)))
        conn.execute(sql.SQL("INSERT INTO {}.t VALUES (%s)").format(sql.Identifier(tenant.build_schema)), (value,))

    build(1)
    publish(conn, tenant, [("t", None, "a table"), ("t", "v", "a value"), ("gone", None, "skipped")], lambda c: None)
    build(2)

    def broken(c):
        raise RuntimeError("the run's record could not be written")

    with pytest.raises(RuntimeError):
        publish(conn, tenant, [], broken)
    table = sql.SQL("{}.t").format(sql.Identifier(tenant.schema))
    assert conn.execute(sql.SQL("SELECT v FROM {}").format(table)).fetchone() == (1,)  # the first run is still what is published
    assert conn.execute("SELECT obj_description(%s::regclass)", (f"{tenant.schema}.t",)).fetchone() == ("a table",)
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(tenant.reader_role)))
        assert conn.execute(sql.SQL("SELECT v FROM {}").format(table)).fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SELECT * FROM {}.users").format(sql.Identifier(tenant.raw_schema)))


def test_teardown_drops_schemas_and_roles(conn, session_tag, box):
    ensure_control_tables(conn, CONTROL)
    names = TenantNames.for_domain(f"td-{secrets.token_hex(3)}", session_tag)
    provision_tenant(conn, names, CONTROL, box)
    assert teardown_tenant(conn, names, CONTROL)
    assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", ([names.reader_role, names.writer_role],)).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE %s", (f"{names.schema}%",)).fetchone() == (0,)
    assert not teardown_tenant(conn, names, CONTROL)


def test_a_changed_role_prefix_is_refused_with_what_to_do(conn, tenant, session_tag, box):
    other = TenantNames.for_domain(tenant.domain, session_tag[:-1] + "z")
    with pytest.raises(TenantNameConflict, match="DATA_EXPLORER_ROLE_PREFIX"):
        provision_tenant(conn, other, CONTROL, box)
    assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (other.reader_role,)).fetchone() == (0,)


def test_control_tables_once_current_take_no_lock_a_publish_holds(db, conn):
    """A runner's publish holds row locks on tenants and runs while the operator and the gateway check
    the control tables: that check must not wait on them (its DDL would lock them, and the two deadlock)."""
    schema = f"ctl_{secrets.token_hex(4)}"
    ensure_control_tables(conn, schema)
    try:
        with db.connect() as publishing:
            publishing.execute(sql.SQL("UPDATE {}.tenants SET updated_at = now()").format(sql.Identifier(schema)))
            publishing.execute(sql.SQL("UPDATE {}.runs SET updated_at = now()").format(sql.Identifier(schema)))
            with db.connect(autocommit=True) as other:
                other.execute("SET lock_timeout = '2s'")
                ensure_control_tables(other, schema)  # returns at once; waiting would raise LockNotAvailable
                assert other.execute(sql.SQL("SELECT count(*) FROM {}.control_version").format(sql.Identifier(schema))).fetchone() == (1,)
            publishing.rollback()
    finally:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_control_tables_are_made_again_when_their_definition_changed(conn):
    schema = f"ctl_{secrets.token_hex(4)}"
    ensure_control_tables(conn, schema)
    try:
        ident = sql.Identifier(schema)
        conn.execute(sql.SQL("UPDATE {}.control_version SET digest = 'older'").format(ident))
        conn.execute(sql.SQL("DROP INDEX {}.runs_domain_created").format(ident))
        ensure_control_tables(conn, schema)
        assert conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.runs_domain_created",)).fetchone() == (True,)
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}.control_version WHERE digest <> 'older'").format(ident)).fetchone() == (1,)
    finally:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_a_tenant_lock_whose_session_was_terminated_ends_without_error_and_is_free(db, conn):
    """A runner whose sessions were terminated after its publish committed must not fail while
    letting go of the lock: PostgreSQL released it with the session."""
    domain = f"lock-{secrets.token_hex(3)}"
    with db.connect(autocommit=True) as holder:
        pid = holder.info.backend_pid
        with tenant_lock(holder, domain) as got:
            assert got and not try_lock(conn, domain)
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.monotonic() + 10
            while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() != (0,):
                assert time.monotonic() < deadline, "the terminated session did not end"
                time.sleep(0.05)
    assert try_lock(conn, domain)
    unlock(conn, domain)


def _primary_key(conn, names, table):
    return conn.execute(
        "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_constraint c"
        " CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum"
        " WHERE c.conrelid = %s::regclass AND c.contype = 'p'", (f'"{names.raw_schema}"."{table}"',),
    ).fetchone()[0]


def test_a_raw_table_made_with_an_older_primary_key_takes_the_declared_one_and_keeps_its_rows(conn, tenant):
    """form_definitions was keyed by xmlns alone; a tenant made then is moved to (app_id, xmlns)."""
    table = sql.SQL("{}.form_definitions").format(sql.Identifier(tenant.raw_schema))
    with conn.transaction():
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT form_definitions_pkey, ADD PRIMARY KEY (xmlns)").format(table))
        conn.execute(sql.SQL("INSERT INTO {} (xmlns, app_id, questions, _generation) VALUES ('x1', 'a1', '[]', 0)").format(table))
    assert _primary_key(conn, tenant, "form_definitions") == ["xmlns"]
    ensure_raw_tables(conn, tenant.raw_schema, PIPELINE.raw_tables)
    assert _primary_key(conn, tenant, "form_definitions") == ["app_id", "xmlns"]
    with conn.transaction():  # a copied app's form: the same xmlns in another app
        conn.execute(sql.SQL("INSERT INTO {} (xmlns, app_id, questions, _generation) VALUES ('x1', 'a2', '[]', 0)").format(table))
    assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0] == 2
    ensure_raw_tables(conn, tenant.raw_schema, PIPELINE.raw_tables)  # and again: nothing to change
    assert _primary_key(conn, tenant, "form_definitions") == ["app_id", "xmlns"]
