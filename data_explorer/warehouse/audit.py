"""The audit log: one append-only row per tool call, with secrets redacted from the arguments.

``<control>.audit_log`` refuses UPDATE, DELETE and TRUNCATE by trigger (see
``control_tables``). Rows go in only through ``<control>.audit_append``, which
gives each its id and time; the gateway's role may call it and read the log, no
more (``grant_audit_writer``). ``seal_audit_log`` hands the table, its triggers'
function and ``audit_append`` to a NOLOGIN role that no login is a member of,
so the admin the gateway logs in as cannot alter them or switch the triggers off
(a superuser still can: PostgreSQL lets it do anything). Before a row is written its arguments are made safe
(``redact_arguments``): the value of any key that names a secret (password,
token, api key, secret, authorization, credential, cookie) becomes
``"[redacted]"`` at any depth; an ``ApiKey``/``Bearer`` credential inside any
string is masked; strings over ``MAX_STRING`` characters (SQL text up to that
length is kept whole) and lists over ``MAX_ITEMS`` items are cut with a marker;
characters PostgreSQL cannot store are replaced.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from data_explorer.warehouse.control_tables import AUDIT_APPEND_ARGUMENTS, acting_as, audit_owner
from data_explorer.warehouse.storable import storable

REDACTED = "[redacted]"
MAX_STRING = 10_000  # characters of one string kept (a long SQL query fits)
MAX_ITEMS = 200  # items of one list kept
MAX_DEPTH = 12  # nesting kept
MAX_TOTAL = 200_000  # characters of the whole arguments document

_SECRET_KEY = re.compile(r"passw(or)?d|passphrase|token|api_?key|secret|authori[sz]ation|credential|cookie|private_?key")
# An Authorization value inside free text: ``ApiKey user:key`` or ``Bearer <token of 16+ characters>``.
_CREDENTIAL_IN_TEXT = re.compile(r"(?i)\b(apikey)(\s+)[^\s'\":]+:[^\s'\"]+|\b(bearer)(\s+)[A-Za-z0-9._~+/-]{16,}=*")
_INT32 = 2**31 - 1


@dataclass(frozen=True)
class AuditEntry:
    principal: str
    tool: str
    arguments: dict[str, Any] = field(repr=False)
    status: str  # "ok" or "error"
    tenant: str | None = None
    error_code: str | None = None
    rows: int | None = None
    truncated: bool | None = None
    duration_ms: int = 0
    transport: str | None = None

    def __post_init__(self) -> None:
        if self.status not in ("ok", "error"):
            raise ValueError(f"audit status must be 'ok' or 'error', not {self.status!r}")


def is_secret_key(key: str) -> bool:
    """True when a key's name says its value is a secret (``api_key``, ``X-Auth-Token``, ``clientSecret``...)."""
    normalized = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).lower().replace("-", "_")
    return _SECRET_KEY.search(normalized) is not None or "apikey" in normalized.replace("_", "")


def _cut(text: str) -> str:
    text = _CREDENTIAL_IN_TEXT.sub(lambda m: f"{m.group(1) or m.group(3)}{m.group(2) or m.group(4)}{REDACTED}", text)
    if len(text) > MAX_STRING:
        return f"{text[:MAX_STRING]}…[truncated: {len(text) - MAX_STRING} more characters]"
    return text


def _redact(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return _cut(value)
    if depth >= MAX_DEPTH:
        return "[truncated: nested too deep]"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            key = _cut(str(key))
            out[key] = REDACTED if is_secret_key(key) else _redact(item, depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        out_list = [_redact(item, depth + 1) for item in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            out_list.append(f"[truncated: {len(items) - MAX_ITEMS} more items]")
        return out_list
    if hasattr(value, "model_dump"):  # pydantic models among tool arguments
        return _redact(value.model_dump(mode="json"), depth)
    return _cut(str(value))


def redact_arguments(arguments: Any) -> dict[str, Any]:
    """A JSON object safe to keep: secrets redacted, long values cut, unstorable characters replaced. Pure."""
    redacted = _redact(arguments if isinstance(arguments, dict) else {"value": arguments}, 0)
    redacted, _ = storable(redacted)
    text = json.dumps(redacted, ensure_ascii=False, default=str)
    if len(text) > MAX_TOTAL:
        return {"[truncated]": f"arguments of {len(text)} characters", "preview": text[:MAX_STRING]}
    return redacted


def _values(entry: AuditEntry) -> tuple[Any, ...]:
    rows = None if entry.rows is None else max(0, min(int(entry.rows), _INT32))
    duration = max(0, min(int(entry.duration_ms), _INT32))
    text = [storable(v)[0] if isinstance(v, str) else v for v in (entry.principal, entry.tenant, entry.tool,
                                                                   entry.error_code, entry.transport)]
    principal, tenant, tool, error_code, transport = text
    return (principal, tenant, tool, Jsonb(redact_arguments(entry.arguments)), entry.status, error_code, rows,
            entry.truncated, duration, transport)


_INSERT = "SELECT {s}.audit_append(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"


async def record_call(aconn: psycopg.AsyncConnection, control: str, entry: AuditEntry) -> int:
    """Append one row; its id. Commits only if the connection is in autocommit (the gateway's is)."""
    cursor = await aconn.execute(sql.SQL(_INSERT).format(s=sql.Identifier(control)), _values(entry))
    row = await cursor.fetchone()
    return row[0] if isinstance(row, tuple) else row["audit_append"]


def record_call_sync(conn: psycopg.Connection, control: str, entry: AuditEntry) -> int:
    """``record_call`` on a sync connection."""
    row = conn.execute(sql.SQL(_INSERT).format(s=sql.Identifier(control)), _values(entry)).fetchone()
    return row[0] if isinstance(row, tuple) else row["audit_append"]


def grant_audit_writer(conn: psycopg.Connection, control: str, role: str) -> None:
    """Let ``role`` append to the audit log through ``audit_append`` and read it, and nothing more."""
    s, r = sql.Identifier(control), sql.Identifier(role)
    with acting_as(conn, audit_owner(conn, control)):
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r))
        conn.execute(sql.SQL("REVOKE INSERT ON {}.audit_log FROM {}").format(s, r))  # granted by earlier versions
        conn.execute(sql.SQL("REVOKE ALL ON SEQUENCE {}.audit_log_id_seq FROM {}").format(s, r))
        conn.execute(sql.SQL("GRANT SELECT ON {}.audit_log TO {}").format(s, r))
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {}.audit_append({}) TO {}").format(
            s, sql.SQL(AUDIT_APPEND_ARGUMENTS), r))


def seal_audit_log(conn: psycopg.Connection, control: str, owner: str) -> None:
    """Hand the audit log, its trigger function and ``audit_append`` to ``owner``, a NOLOGIN role created
    here that the admin is no member of afterwards; idempotent."""
    s, o = sql.Identifier(control), sql.Identifier(owner)
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone() is None:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(o))
    if audit_owner(conn, control) == owner:
        return  # sealed already: ALTER ... OWNER would lock the log against every gateway's writes for nothing
    # a new owner needs CREATE on the schema while it takes the objects over; USAGE is all it keeps
    conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(s, o))
    with acting_as(conn, owner), acting_as(conn, audit_owner(conn, control)):
        conn.execute(sql.SQL("ALTER TABLE {}.audit_log OWNER TO {}").format(s, o))
        conn.execute(sql.SQL("ALTER FUNCTION {}.audit_log_append_only() OWNER TO {}").format(s, o))
        conn.execute(sql.SQL("ALTER FUNCTION {}.audit_append({}) OWNER TO {}").format(s, sql.SQL(AUDIT_APPEND_ARGUMENTS), o))
        conn.execute(sql.SQL("GRANT SELECT ON {}.audit_log TO CURRENT_USER").format(s))  # the admin may read it
    conn.execute(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(s, o))
