"""A run after small changes applies them to the published tables with the plan the last full
build left, in the publishing transaction, and publishes exactly what a full build would."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from psycopg import sql

PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"


# An idle backend reports its counts to the shared statistics within 10 s (PostgreSQL 15 on), one
# that exits as it exits; older servers' collector within about half a second.
STATISTICS_FLUSH = 15.0


def _table_activity(conn, schema: str, tables: tuple[str, ...]) -> list[tuple]:
    """pg_stat_user_tables rows (name, inserted, changed since analyze, last autoanalyze) of these
    tables, once each counts the rows inserted into it or the bounded wait is over.

    A backend's counts reach the shared statistics after its commits, not with them, and
    pg_stat_force_next_flush() flushes only the calling backend's own, not the run's sessions'."""
    deadline = time.monotonic() + STATISTICS_FLUSH
    while True:
        conn.execute("SELECT pg_stat_clear_snapshot()")  # read the shared counts afresh, never a cached copy
        rows = conn.execute(
            "SELECT relname, n_tup_ins, n_mod_since_analyze, last_autoanalyze FROM pg_stat_user_tables"
            " WHERE schemaname = %s AND relname = ANY(%s)", (schema, list(tables)),
        ).fetchall()
        if (len(rows) == len(tables) and all(inserted > 0 for _, inserted, _, _ in rows)) or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def _transform(status):
    assert status.phase == "Succeeded", status.error
    return status.phases["transform"]


def test_small_changes_are_applied_in_place_and_equal_a_full_build(space_factory, conn):
    space = space_factory(cases=400, forms=200)
    first = _transform(space.run())
    assert first["mode"] == "full" and first["reason"] == "nothing has been published yet"
    space.sim.mutate(space.domain, update_cases=12, new_cases=6, new_forms=9)
    applied = _transform(space.run())
    assert applied["mode"] == "incremental", applied
    assert set(applied["models"]) == {"cases", "case_indices", "forms", "form_case_actions", "users", "case_types", "form_submissions"}
    assert applied["models"]["cases"]["rows"] >= 18  # the changed and new cases, written again
    assert applied["models"]["forms"]["rows"] == 9
    expected = space.expected()
    for table in ("cases", "forms", "users"):
        assert space.count(conn, table) == expected[table]
    in_place = space.published(conn)

    rebuilt = _transform(space.run(full=True))
    assert rebuilt["mode"] == "full" and rebuilt["reason"] == "a full run was asked for"
    assert space.published(conn) == in_place, "applying the changes published something a full build does not"


def test_an_unchanged_space_applies_nothing_and_stays_equal(space_factory, conn):
    space = space_factory(cases=200, forms=80)
    space.run()
    before = space.published(conn)
    applied = _transform(space.run())
    assert applied["mode"] == "incremental"
    assert all(applied["models"][m]["rows"] == 0 for m in ("cases", "case_indices", "forms", "form_case_actions"))
    assert space.published(conn) == before


def test_many_changes_build_in_full(space_factory, conn):
    space = space_factory(cases=200, forms=60)
    space.run()
    space.sim.mutate(space.domain, update_cases=80)  # 40% of the cases
    rebuilt = _transform(space.run())
    assert rebuilt["mode"] == "full"
    assert "rebuilding is cheaper" in rebuilt["reason"] and "case_id values changed in cases" in rebuilt["reason"]
    assert space.count(conn, "cases") == space.expected()["cases"]


def test_a_changed_dbt_project_builds_in_full(space_factory, conn, tmp_path):
    space = space_factory(cases=150, forms=50)
    project = tmp_path / "dbt_project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    space.run(DATA_EXPLORER_DBT_PROJECT_DIR=str(project))
    model = project / "models" / "users.sql"
    model.write_text(model.read_text() + "\n-- a changed model\n")
    space.sim.mutate(space.domain, update_cases=3)
    rebuilt = _transform(space.run(DATA_EXPLORER_DBT_PROJECT_DIR=str(project)))
    assert rebuilt["mode"] == "full" and "changed since the last publish" in rebuilt["reason"]
    assert _transform(space.run(DATA_EXPLORER_DBT_PROJECT_DIR=str(project)))["mode"] == "incremental"


def test_a_full_pass_since_the_last_publish_builds_in_full(space_factory, conn):
    """A full pass deletes raw rows the source no longer has; only a full build drops them from the tables."""
    space = space_factory(cases=150, forms=50)
    space.run()
    # as a full pass of an earlier, killed run leaves it: a new generation, rows of older ones deleted
    conn.execute(sql.SQL("UPDATE {}._sync_state SET generation = generation + 1 WHERE source = 'cases'").format(
        sql.Identifier(space.names.raw_schema)))
    rebuilt = _transform(space.run())
    assert rebuilt["mode"] == "full" and rebuilt["reason"].startswith("cases had rows removed since the last publish")


def test_applying_that_fails_rolls_back_and_builds_in_full(space_factory, conn):
    space = space_factory(cases=300, forms=100)
    space.run()
    space.sim.mutate(space.domain, update_cases=10, new_forms=5)
    # a published table the plan reaches last is missing: the tables changed before it must not stay changed
    conn.execute(sql.SQL("DROP TABLE {}.form_submissions").format(sql.Identifier(space.names.schema)))
    rebuilt = _transform(space.run())
    assert rebuilt["mode"] == "full"
    assert "form_submissions" in rebuilt["reason"]
    in_full = space.published(conn)
    assert "form_submissions" in in_full
    space.sim.mutate(space.domain, update_cases=4)
    assert _transform(space.run())["mode"] == "incremental"
    after = space.published(conn)
    _transform(space.run(full=True))
    assert space.published(conn) == after


def test_a_build_schema_left_by_a_killed_full_build_is_dropped(space_factory, conn):
    space = space_factory(cases=150, forms=50)
    space.run()
    conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(  # as a kill leaves it: the writer's
        sql.Identifier(space.names.build_schema), sql.Identifier(space.names.writer_role)))
    conn.execute(sql.SQL("CREATE TABLE {}.cases AS SELECT 1 AS x").format(sql.Identifier(space.names.build_schema)))
    assert _transform(space.run())["mode"] == "incremental"
    left = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (space.names.build_schema,)).fetchone()[0]
    assert left == 0


def test_a_database_clock_behind_the_last_publish_builds_in_full(space_factory, conn):
    space = space_factory(cases=150, forms=50)
    space.run()
    # as after the clock stepped back: rows loaded now would look older than the last publish
    conn.execute(sql.SQL("UPDATE {}._published SET watermark = now() + interval '1 hour'").format(
        sql.Identifier(space.names.raw_schema)))
    space.sim.mutate(space.domain, update_cases=3)
    rebuilt = _transform(space.run())
    assert rebuilt["mode"] == "full" and "clock" in rebuilt["reason"]
    assert space.count(conn, "cases") == space.expected()["cases"]


def test_a_full_run_leaves_statistics_on_what_the_next_run_looks_rows_up_by(space_factory, conn):
    """Without them, the run right after a full one (before autovacuum comes by) scans whole tables."""
    space = space_factory(cases=150, forms=60)
    _transform(space.run())
    schema, raw = space.names.schema, space.names.raw_schema
    analyzed = set(conn.execute(
        "SELECT schemaname, tablename, attname FROM pg_stats WHERE schemaname = ANY(%s)", ([schema, raw],)
    ).fetchall())
    # the key columns of every keyed model, as published
    for table, column in (("cases", "case_id"), ("case_indices", "case_id"), ("forms", "form_id"),
                          ("form_case_actions", "case_id"), ("form_case_actions", "form_id")):
        assert (schema, table, column) in analyzed, (table, column)
    # the raw tables' columns that models join and filter on, and when each row was loaded
    for table, column in (("cases", "case_id"), ("forms", "form_id"), ("form_case_blocks", "case_id"),
                          ("form_case_blocks", "form_id"), ("users", "user_id"), ("cases", "_loaded_at")):
        assert (raw, table, column) in analyzed, (table, column)
    # a column list leaves autovacuum's count of changes alone: it still analyzes every column later
    rows = _table_activity(conn, raw, ("cases", "forms", "form_case_blocks"))
    assert len(rows) == 3
    for name, inserted, changes, autoanalyzed in rows:
        assert inserted > 0, f"the load's counts for {name} never reached the statistics"
        assert changes > 0 or autoanalyzed is not None, name
