"""The query path's errors: each carries a stable ``code`` for the MCP layer (``error_code``
documents the SQLSTATE mapping). Messages hold PostgreSQL's first line and SQLSTATE, never
the DSN or the password."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq

log = logging.getLogger(__name__)


class QueryError(Exception):
    """A query that did not produce a result; ``code`` is one of the gateway's error codes."""

    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, code: str | None = None, sqlstate: str | None = None, detail: dict | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.sqlstate = sqlstate
        self.detail = dict(detail or {})
        if sqlstate:
            self.detail.setdefault("sqlstate", sqlstate)


class QueryRejected(QueryError):
    """Refused before reaching PostgreSQL (the SQL guard, or an argument)."""

    code = "VALIDATION_ERROR"

    def __init__(self, message: str, *, rule: str | None = None):
        super().__init__(message, detail={"rule": rule} if rule else None)
        self.rule = rule


class QueryTimeout(QueryError):
    """The statement ran past statement_timeout (or waited too long for a session) and was stopped."""

    code = "QUERY_TIMEOUT"


class QueryFailed(QueryError):
    """PostgreSQL refused or failed the statement; ``code`` from ``error_code(sqlstate)``."""


_NOT_FOUND_STATES = {"42P01", "42883", "42703", "42704", "3F000", "3D000", "26000", "34000"}
_VALIDATION_CLASSES = ("42", "22", "21", "0A", "54", "25", "2D", "3B", "2F", "P0", "2B", "23", "27", "44", "0B", "0L", "0P")
_ADVICE = {
    "FORBIDDEN": "Queries are read-only and can read only this tenant's tables.",
    "NOT_FOUND": "Check the names: list_tables and describe_table show the tenant's tables and columns.",
    "VALIDATION_ERROR": "Fix the SQL and try again.",
    "CONFLICT": "Try again in a moment.",
}


def error_code(sqlstate: str | None) -> str:
    """The gateway error code for a PostgreSQL SQLSTATE.

    - 57014 query_canceled (statement_timeout) -> QUERY_TIMEOUT
    - 42501 insufficient_privilege, 25006 read_only_sql_transaction, class 28
      (invalid authorization) -> FORBIDDEN
    - undefined table/function/column/object (42P01, 42883, 42703, 42704),
      invalid schema/catalog/statement/cursor name (3F000, 3D000, 26000, 34000) -> NOT_FOUND
    - other errors of the statement: class 42 (syntax, ambiguity, grouping,
      types), 22 (data: division by zero, bad input), 21, 0A (not supported),
      54 (too complex), 25 and 2D (transaction state), 3B (savepoints), 2F, P0,
      2B, 23, 27, 44, 0B, 0L, 0P, and 53400 (a configured limit such as temp_file_limit) -> VALIDATION_ERROR
    - class 40 (serialization, deadlock) and 55P03 (lock not available) -> CONFLICT
    - anything else (connection, resources, operator intervention, internal) -> INTERNAL_ERROR
    """
    if not sqlstate:
        return "INTERNAL_ERROR"
    if sqlstate == "57014":
        return "QUERY_TIMEOUT"
    if sqlstate in ("42501", "25006") or sqlstate.startswith("28"):
        return "FORBIDDEN"
    if sqlstate in _NOT_FOUND_STATES:
        return "NOT_FOUND"
    if sqlstate.startswith(_VALIDATION_CLASSES) or sqlstate == "53400":
        return "VALIDATION_ERROR"
    if sqlstate.startswith("40") or sqlstate == "55P03":
        return "CONFLICT"
    return "INTERNAL_ERROR"


@dataclass
class PgError:
    sqlstate: str | None
    message: str
    hint: str | None = None
    position: str | None = None


def mapped_error(error: PgError, timeout: float) -> QueryError:
    code = error_code(error.sqlstate)
    detail: dict[str, Any] = {}
    if error.hint:
        detail["hint"] = error.hint
    if error.position:
        detail["position"] = int(error.position) if error.position.isdigit() else error.position
    where = f" (SQLSTATE {error.sqlstate})" if error.sqlstate else ""
    if code == "QUERY_TIMEOUT":
        return QueryTimeout(
            f"The query ran past the statement timeout of {timeout:g} s and was stopped: {error.message}{where}. "
            "Narrow it (WHERE, LIMIT) or aggregate.",
            sqlstate=error.sqlstate,
            detail=detail,
        )
    advice = _ADVICE.get(code)
    hint = f" Hint: {error.hint}" if error.hint else ""
    message = f"{error.message}{where}." + hint + (f" {advice}" if advice else "")
    return QueryFailed(message, code=code, sqlstate=error.sqlstate, detail=detail)


def result_error(res: pq.PGresult, encoding: str) -> PgError:
    def get(f: pq.DiagnosticField) -> str | None:
        value = res.error_field(f)
        return value.decode(encoding, "replace") if value is not None else None

    message = get(pq.DiagnosticField.MESSAGE_PRIMARY) or (res.error_message.decode(encoding, "replace").strip() or "error")
    return PgError(
        sqlstate=get(pq.DiagnosticField.SQLSTATE),
        message=message.splitlines()[0],
        hint=get(pq.DiagnosticField.MESSAGE_HINT),
        position=get(pq.DiagnosticField.STATEMENT_POSITION),
    )


def exception_error(exc: psycopg.Error) -> PgError:
    primary = exc.diag.message_primary if exc.sqlstate else None
    return PgError(exc.sqlstate, (primary or "the session to the database failed").splitlines()[0], exc.diag.message_hint)


def connect_failed(exc: Exception, domain: str) -> QueryFailed:
    """A connection failure, told without the DSN (host, port) or the password."""
    text = str(exc)
    if "password authentication failed" in text or "authentication failed" in text:
        why = "the stored reader password was refused; provisioning the tenant again renews it"
    elif "too many connections" in text:
        why = "the reader role has reached its connection limit; try again shortly"
    elif "does not exist" in text and "role" in text:
        why = "the reader role does not exist; the tenant may have been torn down"
    else:
        why = "the database server could not be reached"
    log.warning("query session for %s could not connect: %s", domain, exc)
    return QueryFailed(f"Could not open a query session for {domain!r}: {why}.", code="INTERNAL_ERROR")
