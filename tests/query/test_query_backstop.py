"""The database is the backstop: the hostile corpus, with the guard on and with the guard OFF.

With the guard off, PostgreSQL and the session the executor sets up must alone
keep every write out, every other tenant's and every private schema's data
unread, and the session the tenant's reader. Catalog reads of names (pg_class,
pg_namespace, pg_roles ...) do succeed then: that is metadata, not data, and the
guard refuses it; pg_authid and pg_shadow stay closed. Advisory locks are
granted to PUBLIC by PostgreSQL, so they succeed with the guard off; DISCARD ALL
releases the session-level ones before the session is reused (checked here and
in test_query_executor).

Two harmless statements go another way on some servers, and only in the
direction of refusing: PostgreSQL 16 refuses large-object writes in a read-only
transaction (earlier versions create the object and ROLLBACK discards it), and
a server built without libxml (the embedded one) refuses the XML functions as
an unsupported feature. A feature missing is accepted only there; every other
refusal must come from the server itself holding, never from a missing feature.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import psycopg
import pytest
from hostile_sql import Hostile, rendered

from conftest import fingerprint
from data_explorer.warehouse.query import QueryError, QueryExecutor, QueryRejected, QueryTimeout

pytestmark = pytest.mark.anyio

FEATURE_NOT_SUPPORTED = "0A000"
READ_ONLY_TRANSACTION = "25006"


@dataclass(frozen=True)
class Server:
    version: int  # server_version_num
    xml: bool  # built with libxml

    @classmethod
    def of(cls, conn: psycopg.Connection) -> "Server":
        (version,) = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
        try:
            conn.execute("SELECT xmlparse(content '<a/>')")
        except psycopg.errors.FeatureNotSupported:
            return cls(version, xml=False)
        return cls(version, xml=True)


def expected_off(hostile: Hostile, server: Server) -> tuple[str, str | None]:
    """The outcome with the guard off on this server, and the SQLSTATE a refusal must then carry (None: any)."""
    if hostile.sql.startswith(("SELECT lo_creat(", "SELECT lo_from_bytea(")) and server.version >= 160000:
        # PostgreSQL 16 refuses large-object writes in a read-only transaction: the backstop, earlier
        return "refused", READ_ONLY_TRANSACTION
    if "_to_xml(" in hostile.sql and hostile.off == "ok" and not server.xml:
        # built without libxml, the XML functions fail before anything is read; the corpus's XML reads of
        # other tenants are still refused by privilege first (any refusal but a missing feature, below)
        return "refused", FEATURE_NOT_SUPPORTED
    return hostile.off, None


async def test_the_guard_refuses_the_whole_corpus_before_any_session_opens(query_world):
    ex = QueryExecutor(query_world.dsn)
    try:
        for hostile, sql_text in rendered(query_world.placeholders()):
            with pytest.raises(QueryRejected) as refused:
                await ex.run(query_world.a.login, sql_text)
            assert refused.value.code == "VALIDATION_ERROR"
            assert refused.value.rule == hostile.rule, (sql_text, str(refused.value))
        assert ex._pools == {}  # nothing reached PostgreSQL
    finally:
        await ex.close()


async def test_postgres_alone_holds_with_the_guard_off(query_world, admin):
    world = query_world
    login = world.a.login
    before = fingerprint(admin, world)
    (large_objects,) = admin.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
    server = Server.of(admin)
    ex = QueryExecutor(world.dsn, statement_timeout=0.5, pool_size=2)
    outcomes: dict[str, list[str]] = {"refused": [], "timeout": [], "ok": []}
    mismatches = []
    try:
        for hostile, sql_text in rendered(world.placeholders()):
            sqlstate = None
            try:
                result = await ex.run(login, sql_text, guard=False)
            except QueryTimeout:
                outcome, seen = "timeout", ""
            except QueryError as exc:
                outcome, seen, sqlstate = "refused", str(exc), exc.sqlstate
            else:
                outcome, seen = "ok", json.dumps([result.columns, result.rows], default=str)
            outcomes[outcome].append(sql_text)
            expected, expected_state = expected_off(hostile, server)
            # a feature the server lacks is no proof that it holds: accepted only where expected_off says so
            wrong_state = sqlstate != expected_state if expected_state else sqlstate == FEATURE_NOT_SUPPORTED
            if outcome != expected or (outcome == "refused" and wrong_state):
                mismatches.append((sql_text, f"{expected} {expected_state or ''}", f"{outcome} {sqlstate or ''}", seen[:200]))
            for secret in world.secrets_of_others():
                assert secret not in seen, f"{sql_text!r} returned data it must not see"
            # The next query on the pool is still the reader, in a read-only transaction, on its own schema.
            who = await ex.run(
                login,
                "SELECT current_user, session_user, current_setting('search_path'), "
                "current_setting('transaction_read_only'), current_setting('default_transaction_read_only'), "
                "(SELECT count(*) FROM cases)",
            )
            assert who.rows == [[login.role, login.role, login.schema, "on", "on", 200]], sql_text
    finally:
        await ex.close()
    assert not mismatches, "\n".join(f"{s!r}: expected {e}, got {g}: {detail}" for s, e, g, detail in mismatches)
    assert fingerprint(admin, world) == before  # both tenants' data, private schemas, control tables, roles, grants
    assert admin.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0] == large_objects
    assert admin.execute(  # in this database: other databases' runs may hold theirs
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())").fetchone()[0] == 0
    assert admin.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone()[0] == 0
    print(  # the summary the report quotes (pytest -s)
        f"\nhostile corpus with the guard off: {Counter({k: len(v) for k, v in outcomes.items()})}"
        + "".join(f"\n  ok: {s}" for s in outcomes["ok"])
    )
