"""The audit log: rows written with secrets redacted and long values cut; append-only for the role that
writes it (and for its owner: the triggers refuse UPDATE, DELETE and TRUNCATE)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from data_explorer.warehouse.audit import (
    MAX_STRING,
    REDACTED,
    AuditEntry,
    grant_audit_writer,
    record_call,
    record_call_sync,
    redact_arguments,
)
from data_explorer.warehouse.control_tables import ensure_control_tables

CONTROL = "auth_audit_ctl"


@pytest.fixture
def control(conn):
    ensure_control_tables(conn, CONTROL)
    return CONTROL


def _entry(**changes) -> AuditEntry:
    values = dict(principal="demo@example.org", tenant="demo", tool="query", arguments={"sql": "select 1"},
                  status="ok", rows=1, truncated=False, duration_ms=12, transport="http")
    values.update(changes)
    return AuditEntry(**values)


def _row(conn, control: str, row_id: int) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.SQL("SELECT * FROM {}.audit_log WHERE id = %s").format(sql.Identifier(control)),
                           (row_id,)).fetchone()


def test_secrets_are_redacted_at_any_depth():
    arguments = {
        "sql": "select 1",
        "password": "p1", "api_key": "k1", "apiKey": "k2", "ApiKey": "k3", "X-Auth-Token": "t1",
        "client_secret": "s1", "Authorization": "ApiKey demo@example.org:k4", "credentials": {"user": "u", "key": "k5"},
        "nested": {"list": [{"refresh_token": "t2"}, {"fine": "kept", "deeper": {"access_token": "t3"}}]},
        "tenant": "demo", "limit": 10, "wait": True, "none": None,
    }
    out = redact_arguments(arguments)
    text = repr(out)
    for secret in ("p1", "k1", "k2", "k3", "k4", "k5", "t1", "t2", "t3", "s1"):
        assert f"'{secret}'" not in text and f":{secret}" not in text, secret
    assert out["password"] == out["Authorization"] == out["credentials"] == REDACTED
    assert out["nested"]["list"][1] == {"fine": "kept", "deeper": {"access_token": REDACTED}}
    assert (out["sql"], out["tenant"], out["limit"], out["wait"], out["none"]) == ("select 1", "demo", 10, True, None)
    assert arguments["password"] == "p1"  # the caller's arguments are left alone


def test_credentials_inside_text_are_masked():
    out = redact_arguments({"sql": "select 'ApiKey demo@example.org:abc123', 'Bearer abcdefghijklmnop0123456789'"})
    assert "abc123" not in out["sql"] and "abcdefghijklmnop0123456789" not in out["sql"]
    assert out["sql"].count(REDACTED) == 2
    assert redact_arguments({"sql": "select 'basic bearer of news'"})["sql"] == "select 'basic bearer of news'"


def test_long_values_are_cut_with_a_marker_and_sql_up_to_the_limit_is_kept():
    query = "select " + "x" * (MAX_STRING - 7)
    assert redact_arguments({"sql": query})["sql"] == query
    out = redact_arguments({"sql": query + "yz", "items": list(range(500))})
    assert out["sql"].startswith(query) and out["sql"].endswith("[truncated: 2 more characters]")
    assert len(out["items"]) == 201 and out["items"][-1] == "[truncated: 300 more items]"
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["d"] = {}
        node = node["d"]
    assert "nested too deep" in repr(redact_arguments(deep))


def test_unstorable_characters_do_not_lose_the_row(conn, control):
    row_id = record_call_sync(conn, control, _entry(arguments={"sql": "select '\x00'", "bad\ud800": "\ud800"}))
    assert _row(conn, control, row_id)["arguments"] == {"sql": "select '\ufffd'", "bad\ufffd": "\ufffd"}


def test_a_sync_row_has_every_field(conn, control):
    secret = "k-" + "9" * 20
    row_id = record_call_sync(conn, control, _entry(
        tool="run_materialization", arguments={"tenant": "demo", "token": secret}, status="error",
        error_code="CONFLICT", rows=None, truncated=None, duration_ms=1234, transport="stdio"))
    row = _row(conn, control, row_id)
    assert row["principal"] == "demo@example.org" and row["tenant"] == "demo" and row["tool"] == "run_materialization"
    assert row["arguments"] == {"tenant": "demo", "token": REDACTED}
    assert (row["status"], row["error_code"], row["rows"], row["truncated"]) == ("error", "CONFLICT", None, None)
    assert row["duration_ms"] == 1234 and row["transport"] == "stdio" and row["at"] is not None
    assert secret not in repr(row)


@pytest.mark.anyio
async def test_record_call_on_an_async_connection(database_url, conn, control):
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as aconn:
        row_id = await record_call(aconn, control, _entry(arguments={"sql": "select 2", "password": "pw"}))
    row = _row(conn, control, row_id)
    assert row["arguments"] == {"sql": "select 2", "password": REDACTED} and row["rows"] == 1


def test_a_bad_status_is_refused_before_writing():
    with pytest.raises(ValueError):
        _entry(status="maybe")


@pytest.fixture
def writer_role(conn, control, session_tag):
    role = f"{session_tag}_audit_writer"
    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    grant_audit_writer(conn, control, role)
    yield role
    conn.execute("RESET ROLE")
    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.parametrize("statement", [
    "UPDATE {}.audit_log SET principal = 'someone else'",
    "DELETE FROM {}.audit_log",
    "TRUNCATE {}.audit_log",
])
def test_the_writer_role_can_append_and_read_but_not_change(conn, control, writer_role, statement):
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(writer_role)))
    row_id = record_call_sync(conn, control, _entry())
    assert _row(conn, control, row_id)["principal"] == "demo@example.org"
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(sql.SQL(statement).format(sql.Identifier(control)))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # nor switch the triggers off
        conn.execute("SET session_replication_role = replica")
    conn.execute("RESET ROLE")
    assert _row(conn, control, row_id)["principal"] == "demo@example.org"


@pytest.mark.parametrize("statement", [
    "UPDATE {}.audit_log SET principal = 'someone else'",
    "DELETE FROM {}.audit_log",
    "TRUNCATE {}.audit_log",
])
def test_even_the_owner_cannot_change_the_log(conn, control, statement):
    row_id = record_call_sync(conn, control, _entry())
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        conn.execute(sql.SQL(statement).format(sql.Identifier(control)))
    assert _row(conn, control, row_id) is not None
