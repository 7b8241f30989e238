"""The database is the backstop: the hostile corpus, with the guard on and with the guard OFF.

With the guard off, PostgreSQL and the session the executor sets up must alone
keep every write out, every other tenant's and every private schema's data
unread, and the session the tenant's reader. Catalog reads of names (pg_class,
pg_namespace, pg_roles ...) do succeed then: that is metadata, not data, and the
guard refuses it; pg_authid and pg_shadow stay closed. Advisory locks are
granted to PUBLIC by PostgreSQL, so they succeed with the guard off; DISCARD ALL
releases the session-level ones before the session is reused (checked here and
in test_query_executor).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hostile_sql import rendered

from conftest import fingerprint
from data_explorer.warehouse.query import QueryError, QueryExecutor, QueryRejected, QueryTimeout

pytestmark = pytest.mark.anyio


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
    ex = QueryExecutor(world.dsn, statement_timeout=0.5, pool_size=2)
    outcomes: dict[str, list[str]] = {"refused": [], "timeout": [], "ok": []}
    mismatches = []
    try:
        for hostile, sql_text in rendered(world.placeholders()):
            try:
                result = await ex.run(login, sql_text, guard=False)
            except QueryTimeout:
                outcome, seen = "timeout", ""
            except QueryError as exc:
                outcome, seen = "refused", str(exc)
            else:
                outcome, seen = "ok", json.dumps([result.columns, result.rows], default=str)
            outcomes[outcome].append(sql_text)
            if outcome != hostile.off:
                mismatches.append((sql_text, hostile.off, outcome, seen[:200]))
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
