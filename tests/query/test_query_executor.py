"""The query executor against a real PostgreSQL: results, caps, timeouts, cancellation, session hygiene, errors."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from datetime import date, datetime, timezone
from decimal import Decimal
from uuid import UUID

import psycopg
import pytest
from allowed_sql import ALLOWED, render

from data_explorer.warehouse.query import (
    QueryExecutor,
    QueryFailed,
    QueryRejected,
    QueryTimeout,
    TenantLogin,
)
from data_explorer.warehouse.provisioning import READER_DEFAULTS
from data_explorer.warehouse.query_errors import error_code
from data_explorer.warehouse.query_values import json_safe
from data_explorer.warehouse.tenant_login import reader_conninfo

pytestmark = pytest.mark.anyio


@pytest.fixture
async def executor(query_world):
    ex = QueryExecutor(query_world.dsn, statement_timeout=5)
    yield ex
    await ex.close()


def _reader_sessions(admin, role: str) -> list[tuple[int, str, str]]:
    return admin.execute(
        "SELECT pid, state, query FROM pg_stat_activity WHERE usename = %s ORDER BY pid", (role,)
    ).fetchall()


async def _pid(ex: QueryExecutor, login: TenantLogin) -> int:
    return (await ex.run(login, "SELECT pg_backend_pid()", guard=False)).rows[0][0]


# --- results ----------------------------------------------------------------------------------------


async def test_rows_and_column_types(executor, query_world):
    result = await executor.run(query_world.a.login, "SELECT * FROM cases ORDER BY case_id LIMIT 2")
    assert result.columns == [
        {"name": "case_id", "type": "uuid"},
        {"name": "case_type", "type": "text"},
        {"name": "owner_id", "type": "text"},
        {"name": "name", "type": "text"},
        {"name": "opened_on", "type": "timestamp with time zone"},
        {"name": "closed", "type": "boolean"},
        {"name": "properties", "type": "jsonb"},
        {"name": "amount", "type": "numeric(10,2)"},
        {"name": "visits", "type": "integer"},
        {"name": "score", "type": "double precision"},
        {"name": "birth_date", "type": "date"},
        {"name": "tags", "type": "text[]"},
        {"name": "photo", "type": "bytea"},
        {"name": "note", "type": "text"},
    ]
    assert (result.row_count, result.truncated, result.truncated_reason) == (2, False, None)
    assert result.statement == "SELECT * FROM cases ORDER BY case_id LIMIT 2"
    row = dict(zip([c["name"] for c in result.columns], result.rows[0]))
    UUID(row["case_id"])
    assert datetime.fromisoformat(row["opened_on"]).tzinfo is not None  # ISO 8601, in UTC
    assert row["opened_on"].endswith("+00:00")
    assert isinstance(row["properties"], dict) and set(row["properties"]) == {"village", "status", "household"}
    assert isinstance(row["amount"], (int, float)) and isinstance(row["visits"], int) and isinstance(row["score"], float)
    date.fromisoformat(row["birth_date"])
    assert row["tags"][1] == "x"
    assert row["photo"].startswith("\\x")
    assert row["note"] == query_world.a.marker
    json.dumps(result.rows, allow_nan=False)


async def test_values_that_python_or_json_cannot_hold(executor, query_world):
    result = await executor.run(query_world.a.login, "SELECT * FROM odd_values ORDER BY id")
    one, two, three = result.rows
    assert one == [
        1, "infinity", "-infinity", "NaN", "Infinity", "1 mon 2 days 03:04:05", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "\\xdeadbeef", {"a": [1, 2.5, None], "b": {"c": "d"}}, [1, 2, None], "10.0.0.1", "24:00:00",
        12345678901234567890.5, 0.1,
    ]
    assert two == [2, "2024-05-01T10:00:00+00:00", "2024-05-01", 42, -0.5, "-03:00:00", None, "\\x", None, [], None,
                   "12:30:00", -7, 1e-20]
    assert three == [3, None, None, None, "NaN", None, None, None, None, None, None, None, None, None]
    json.dumps(result.rows, allow_nan=False)


def test_json_safe():
    assert json_safe(Decimal("12.50")) == 12.5
    assert json_safe(Decimal("12.00")) == 12 and isinstance(json_safe(Decimal("12.00")), int)
    assert json_safe(Decimal("NaN")) == "NaN" and json_safe(Decimal("-Infinity")) == "-Infinity"
    assert json_safe(float("inf")) == "Infinity" and json_safe(float("nan")) == "NaN"
    assert json_safe(datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)) == "2024-01-02T03:04:05+00:00"
    assert json_safe(date(2024, 1, 2)) == "2024-01-02"
    assert json_safe(UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert json_safe(b"\x00\xff") == "\\x00ff" and json_safe(memoryview(b"a")) == "\\x61"
    assert json_safe({"a": [Decimal("1.5"), (1, None)], 2: True}) == {"a": [1.5, [1, None]], "2": True}
    assert json_safe(object.__new__(type("Odd", (), {"__str__": lambda self: "odd"}))) == "odd"


async def test_an_empty_result_keeps_its_columns(executor, query_world):
    result = await executor.run(query_world.a.login, "SELECT case_id, visits FROM cases WHERE false")
    assert result.columns == [{"name": "case_id", "type": "uuid"}, {"name": "visits", "type": "integer"}]
    assert (result.rows, result.row_count, result.truncated) == ([], 0, False)


async def test_explain_returns_the_plan(executor, query_world):
    result = await executor.run(query_world.a.login, "EXPLAIN (FORMAT JSON) SELECT * FROM cases")
    assert result.columns == [{"name": "QUERY PLAN", "type": "json"}]
    assert result.rows[0][0][0]["Plan"]["Relation Name"] == "cases"


@pytest.mark.parametrize(("sql", "same_result"), ALLOWED, ids=[s[:50] for s, _ in ALLOWED])
async def test_the_guards_rendering_runs_like_the_original(executor, query_world, sql, same_result):
    """Every allowed statement runs, and what the guard executes (its own rendering) gives what the original gives."""
    text = render(sql, query_world.a.names.schema)
    guarded = await executor.run(query_world.a.login, text, max_rows=1000)
    original = await executor.run(query_world.a.login, text, max_rows=1000, guard=False)
    assert [c["type"] for c in guarded.columns] == [c["type"] for c in original.columns]
    assert [c["name"] for c in guarded.columns] == [c["name"] for c in original.columns]
    assert guarded.row_count == original.row_count or not same_result
    if same_result:
        key = lambda row: json.dumps(row, sort_keys=True)  # noqa: E731
        assert sorted(guarded.rows, key=key) == sorted(original.rows, key=key)


# --- caps --------------------------------------------------------------------------------------------


async def test_the_row_cap_reads_one_row_more_to_know(executor, query_world):
    login = query_world.a.login
    capped = await executor.run(login, "SELECT case_id FROM cases", max_rows=7)
    assert (capped.row_count, capped.truncated, capped.truncated_reason) == (7, True, "rows")
    exact = await executor.run(login, "SELECT case_id FROM cases", max_rows=200)
    assert (exact.row_count, exact.truncated, exact.truncated_reason) == (200, False, None)
    one_short = await executor.run(login, "SELECT case_id FROM cases", max_rows=199)
    assert (one_short.row_count, one_short.truncated) == (199, True)
    default = await executor.run(login, "SELECT * FROM forms CROSS JOIN users")  # 1500 rows, default cap 500
    assert (default.row_count, default.truncated_reason) == (500, "rows")
    with pytest.raises(QueryRejected):
        await executor.run(login, "SELECT 1", max_rows=0)


async def test_the_byte_cap(query_world):
    ex = QueryExecutor(query_world.dsn, max_bytes=4096)
    try:
        result = await ex.run(query_world.a.login, "SELECT * FROM cases ORDER BY case_id")
        assert (result.truncated, result.truncated_reason) == (True, "bytes")
        assert 0 < result.row_count < 200
        assert len(json.dumps(result.rows, ensure_ascii=False, separators=(",", ":")).encode()) <= 4096
        huge = await ex.run(query_world.a.login, "SELECT repeat('x', 3000000) AS big")
        assert (huge.row_count, huge.truncated_reason, huge.columns) == (0, "bytes", [{"name": "big", "type": "text"}])
    finally:
        await ex.close()


async def test_a_capped_result_is_not_read_whole_and_the_session_is_reused(query_world):
    ex = QueryExecutor(query_world.dsn, pool_size=1, statement_timeout=30)
    try:
        login = query_world.a.login
        before = await _pid(ex, login)
        started = time.monotonic()
        # (a set-returning function in the select list streams; in FROM it would be materialized first)
        result = await ex.run(login, "SELECT generate_series(1, 50000000) AS g, repeat('x', 200)", max_rows=5)
        assert time.monotonic() - started < 3  # 50 million rows would take far longer: the statement was cancelled
        assert (result.row_count, result.truncated_reason) == (5, "rows")
        assert await _pid(ex, login) == before
    finally:
        await ex.close()


# --- timeouts and cancellation -------------------------------------------------------------------------


async def test_statement_timeout(query_world):
    ex = QueryExecutor(query_world.dsn, statement_timeout=0.5)
    try:
        login = query_world.a.login
        started = time.monotonic()
        with pytest.raises(QueryTimeout) as timed_out:
            await ex.run(login, "SELECT pg_sleep(10)", guard=False)
        assert 0.4 < time.monotonic() - started < 3
        assert timed_out.value.code == "QUERY_TIMEOUT" and timed_out.value.sqlstate == "57014"
        assert "0.5 s" in str(timed_out.value)
        with pytest.raises(QueryTimeout):  # allowed by the guard; stopped by PostgreSQL
            await ex.run(login, "SELECT count(*) FROM generate_series(1, 100000) a CROSS JOIN generate_series(1, 100000) b")
        with pytest.raises(QueryTimeout):  # changing the setting inside the statement does not disarm the running timer
            await ex.run(login, "SELECT set_config('statement_timeout', '0', false), pg_sleep(3)", guard=False)
        assert (await ex.run(login, "SELECT 1")).rows == [[1]]
    finally:
        await ex.close()


async def test_a_cancelled_task_cancels_the_statement_in_postgres(query_world, admin):
    ex = QueryExecutor(query_world.dsn, statement_timeout=60)
    login = query_world.a.login
    try:
        task = asyncio.create_task(ex.run(login, "SELECT pg_sleep(30)", guard=False))
        await asyncio.sleep(0.5)
        running = [pid for pid, state, query in _reader_sessions(admin, login.role) if state == "active" and "pg_sleep(30)" in query]
        assert len(running) == 1
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 2
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            row = admin.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (running[0],)).fetchone()
            if row is None:
                break  # the statement was cancelled and its session closed
            await asyncio.sleep(0.05)
        assert row is None, f"backend {running[0]} still {row[0]}"
        assert (await ex.run(login, "SELECT count(*) FROM cases")).rows == [[200]]
    finally:
        await ex.close()


async def test_busy_sessions_make_a_query_wait_then_time_out(query_world):
    ex = QueryExecutor(query_world.dsn, pool_size=1, acquire_timeout=0.3)
    try:
        login = query_world.a.login
        slow = asyncio.create_task(ex.run(login, "SELECT pg_sleep(1)", guard=False))
        await asyncio.sleep(0.1)
        with pytest.raises(QueryTimeout) as waited:
            await ex.run(login, "SELECT 1")
        assert "busy" in str(waited.value)
        await slow
    finally:
        await ex.close()


# --- sessions ---------------------------------------------------------------------------------------------


async def test_pool_reuse_does_not_leak_session_state(query_world, admin):
    ex = QueryExecutor(query_world.dsn, pool_size=1)
    try:
        login = query_world.a.login
        pid = await _pid(ex, login)
        for statement in (
            "SELECT set_config('work_mem', '77MB', false)",
            "SET work_mem = '78MB'",
            "SET search_path TO pg_catalog",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
            "PREPARE leftover AS SELECT 1",
            "DECLARE leftover CURSOR WITH HOLD FOR SELECT 1",
            "LISTEN leftover",
            "SELECT pg_advisory_lock(4711)",
            "SELECT setseed(0.5)",
        ):
            await ex.run(login, statement, guard=False)
        state = await ex.run(
            login,
            "SELECT pg_backend_pid(), current_setting('work_mem'), current_setting('search_path'), "
            "current_setting('transaction_read_only'), current_setting('default_transaction_read_only'), "
            "(SELECT count(*) FROM pg_prepared_statements WHERE name = 'leftover'), "
            "(SELECT count(*) FROM pg_cursors WHERE name = 'leftover'), "
            "(SELECT count(*) FROM pg_listening_channels())",
            guard=False,
        )
        work_mem = dict(READER_DEFAULTS)["work_mem"]  # the reader's own default, back after a SET
        assert state.rows == [[pid, work_mem, login.schema, "on", "on", 0, 0, 0]]
        with pytest.raises(QueryFailed) as gone:
            await ex.run(login, "EXECUTE leftover", guard=False)
        assert gone.value.code == "NOT_FOUND"
        (held,) = admin.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", (pid,)).fetchone()
        assert held == 0
    finally:
        await ex.close()


def test_advisory_locks_session_level_outlives_rollback_but_not_discard_all(query_world, admin):
    """Why the executor runs DISCARD ALL: a session-level advisory lock survives ROLLBACK."""
    login = query_world.a.login
    with psycopg.connect(reader_conninfo(query_world.dsn, login.role, login.password), autocommit=True) as reader:
        pid = reader.info.backend_pid
        count = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND pid = %s"
        reader.execute("BEGIN READ ONLY")
        reader.execute("SELECT pg_advisory_lock(9001), pg_advisory_xact_lock(9002)")
        reader.execute("ROLLBACK")
        assert admin.execute(count, (9001, pid)).fetchone()[0] == 1  # session level: still held
        assert admin.execute(count, (9002, pid)).fetchone()[0] == 0  # transaction level: released
        reader.execute("DISCARD ALL")
        assert admin.execute(count, (9001, pid)).fetchone()[0] == 0


async def test_an_advisory_lock_does_not_outlive_the_query(executor, query_world, admin):
    result = await executor.run(query_world.a.login, "SELECT pg_advisory_lock(4242)", guard=False)
    assert result.rows == [[""]]  # void
    (got,) = admin.execute("SELECT pg_try_advisory_lock(4242)").fetchone()
    assert got is True
    admin.execute("SELECT pg_advisory_unlock(4242)")


def test_psycopg_would_send_several_statements_without_parameters(query_world):
    """Why the executor talks to libpq itself: psycopg's execute() uses the simple protocol when there are no parameters."""
    login = query_world.a.login
    with psycopg.connect(reader_conninfo(query_world.dsn, login.role, login.password), autocommit=True) as reader:
        cur = reader.execute("SELECT 1; SELECT 2")
        assert cur.nextset() and cur.fetchone() == (2,)


async def test_the_server_refuses_several_statements_even_without_the_guard(executor, query_world):
    with pytest.raises(QueryFailed) as refused:
        await executor.run(query_world.a.login, "SELECT 1; SELECT 2", guard=False)
    assert refused.value.sqlstate == "42601" and "multiple commands" in str(refused.value)


async def test_a_pooled_session_the_server_closed_is_replaced(query_world, admin):
    ex = QueryExecutor(query_world.dsn, pool_size=1)
    try:
        login = query_world.a.login
        pid = await _pid(ex, login)
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert await _pid(ex, login) != pid
    finally:
        await ex.close()


async def test_pool_size_bounds_the_sessions_of_a_tenant(query_world, admin):
    ex = QueryExecutor(query_world.dsn, pool_size=2)
    try:
        login = query_world.a.login
        started = time.monotonic()
        results = await asyncio.gather(*(ex.run(login, "SELECT pg_sleep(0.2)", guard=False) for _ in range(6)))
        assert len(results) == 6 and time.monotonic() - started >= 0.55  # three rounds of two
        assert len(_reader_sessions(admin, login.role)) <= 2
        await ex.forget(login.domain)
        assert _reader_sessions(admin, login.role) == [] or await _until_gone(admin, login.role)
    finally:
        await ex.close()


async def _until_gone(admin, role: str) -> bool:
    for _ in range(40):
        if not _reader_sessions(admin, role):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_tenants_get_sessions_of_their_own(executor, query_world):
    a = await executor.run(query_world.a.login, "SELECT current_user, count(*) FROM cases GROUP BY 1")
    b = await executor.run(query_world.b.login, "SELECT current_user, count(*) FROM cases GROUP BY 1")
    assert a.rows == [[query_world.a.login.role, 200]]
    assert b.rows == [[query_world.b.login.role, 200]]
    b_note = await executor.run(query_world.b.login, "SELECT DISTINCT note FROM cases")
    assert b_note.rows == [[query_world.b.marker]]


# --- errors ---------------------------------------------------------------------------------------------


async def test_errors_have_stable_codes_and_no_secrets(executor, query_world):
    login = query_world.a.login
    cases = [
        ("DELETE FROM cases", True, QueryRejected, "VALIDATION_ERROR"),
        (f"SELECT * FROM {query_world.b.names.schema}.cases", False, QueryFailed, "FORBIDDEN"),
        ("DELETE FROM cases", False, QueryFailed, "FORBIDDEN"),
        ("SELEC 1", False, QueryFailed, "VALIDATION_ERROR"),
        ("SELECT * FROM no_such_table", True, QueryFailed, "NOT_FOUND"),
        ("SELECT no_such_column FROM cases", True, QueryFailed, "NOT_FOUND"),
        ("SELECT 1 / 0", True, QueryFailed, "VALIDATION_ERROR"),
        ("SELECT 'x'::int", True, QueryFailed, "VALIDATION_ERROR"),
        ("SELECT (SELECT case_id FROM cases)", True, QueryFailed, "VALIDATION_ERROR"),
    ]
    for sql_text, guard, kind, code in cases:
        with pytest.raises(kind) as failed:
            await executor.run(login, sql_text, guard=guard)
        message = str(failed.value)
        assert failed.value.code == code, (sql_text, message)
        assert login.password not in message and "host=" not in message and "password" not in message.lower()
    with pytest.raises(QueryRejected) as rejected:
        await executor.run(login, "SELECT pg_sleep(1)")
    assert rejected.value.rule == "function" and rejected.value.detail == {"rule": "function"}
    with pytest.raises(QueryFailed) as missing:
        await executor.run(login, "SELECT * FROM no_such_table")
    assert missing.value.detail["sqlstate"] == "42P01" and missing.value.detail["position"] == 15


async def test_a_failed_login_is_reported_without_secrets(executor, query_world):
    # The test server trusts local connections, so a wrong password would pass; a missing role fails the same way.
    wrong = replace(query_world.a.login, domain="gone", role=query_world.a.login.role + "_gone", password="not-the-password")
    with pytest.raises(QueryFailed) as failed:
        await executor.run(wrong, "SELECT 1")
    message = str(failed.value)
    assert failed.value.code == "INTERNAL_ERROR" and "reader role does not exist" in message
    assert "not-the-password" not in message and "127.0.0.1" not in message and "5432" not in message
    assert "not-the-password" not in repr(wrong)


def test_error_code_mapping():
    assert {s: error_code(s) for s in (
        "57014", "42501", "25006", "28000", "42P01", "42883", "42703", "3F000", "42601", "22012", "22P02", "21000",
        "0A000", "54001", "25001", "53400", "40P01", "55P03", "53100", "08006", "XX000", None,
    )} == {
        "57014": "QUERY_TIMEOUT", "42501": "FORBIDDEN", "25006": "FORBIDDEN", "28000": "FORBIDDEN",
        "42P01": "NOT_FOUND", "42883": "NOT_FOUND", "42703": "NOT_FOUND", "3F000": "NOT_FOUND",
        "42601": "VALIDATION_ERROR", "22012": "VALIDATION_ERROR", "22P02": "VALIDATION_ERROR", "21000": "VALIDATION_ERROR",
        "0A000": "VALIDATION_ERROR", "54001": "VALIDATION_ERROR", "25001": "VALIDATION_ERROR", "53400": "VALIDATION_ERROR",
        "40P01": "CONFLICT", "55P03": "CONFLICT", "53100": "INTERNAL_ERROR", "08006": "INTERNAL_ERROR",
        "XX000": "INTERNAL_ERROR", None: "INTERNAL_ERROR",
    }
