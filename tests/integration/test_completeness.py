"""Every load set beside what CommCare reported, and the look-back window behind the cursor: against the
simulator over HTTP and the real PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

from psycopg import sql

from data_explorer.loaders.cursor import floor_to_millisecond
from data_explorer.pipelines.status import incomplete_sources
from data_explorer.warehouse.checkpoints import read_checkpoint


def _raw(space, table: str) -> sql.Composable:
    return sql.SQL("{}.{}").format(sql.Identifier(space.names.raw_schema), sql.Identifier(table))


def test_a_full_run_sets_each_source_beside_what_the_server_reported(space, conn):
    status = space.run()
    assert status.phase == "Succeeded", status.error
    expected = space.expected()
    for source, count in expected.items():
        assert status.phases["load"][source]["counts"] == {"server": count, "received": count, "stored": count, "missing": 0}
    assert incomplete_sources(status.phases["load"]) == {}
    # an incremental run carries them, and its window re-read nothing new
    again = space.run()
    assert again.phase == "Succeeded", again.error
    assert again.phases["load"]["cases"]["counts"]["stored"] == expected["cases"]
    assert again.phases["load"]["cases"]["reread_new"] == 0


def test_the_look_back_window_brings_back_what_is_not_stored_and_counts_it(space, conn):
    """Records within the window that were never stored (as a record indexed late under an earlier stamp
    would be) are loaded by the next incremental run, counted as new; those stored as they are are read
    again but not written, so they are not taken for changes."""
    lookback = timedelta(days=30)
    settings = {"COMMCARE_LOOKBACK_SECONDS": int(lookback.total_seconds())}
    assert space.run(**settings).phase == "Succeeded"
    with conn.transaction():
        mark = read_checkpoint(conn, space.names.raw_schema, "cases").cursor["indexed_on"]
    start = floor_to_millisecond(datetime.fromisoformat(mark)) - lookback
    in_window = conn.execute(
        sql.SQL("SELECT case_id, indexed_on FROM {} WHERE indexed_on >= %s ORDER BY indexed_on DESC").format(_raw(space, "cases")),
        (start,),
    ).fetchall()
    # not those at the mark itself: the cursor knows it stored them there, and skips them
    lost = [case_id for case_id, instant in in_window if instant < datetime.fromisoformat(mark)][:3]
    assert len(lost) == 3, "the window should hold some stored cases"
    for table in (_raw(space, "cases"), sql.Identifier(space.names.schema, "cases")):  # as if never received
        conn.execute(sql.SQL("DELETE FROM {} WHERE case_id = ANY(%s)").format(table), (lost,))
    loaded_at = dict(conn.execute(sql.SQL("SELECT case_id, _loaded_at FROM {}").format(_raw(space, "cases"))).fetchall())

    status = space.run(**settings)
    assert status.phase == "Succeeded", status.error
    cases = status.phases["load"]["cases"]
    assert cases["mode"] == "incremental"
    assert cases["reread"] == len(in_window) and cases["reread_new"] == len(lost)
    assert space.count(conn, "cases") == space.expected()["cases"]
    assert conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE case_id = ANY(%s)").format(sql.Identifier(space.names.schema, "cases")), (lost,)
    ).fetchone()[0] == len(lost)
    # what the window read again as it was stored is left alone
    after = dict(conn.execute(sql.SQL("SELECT case_id, _loaded_at FROM {}").format(_raw(space, "cases"))).fetchall())
    assert {k for k, v in after.items() if loaded_at.get(k) != v} == set(lost)


def _last_cases(conn, space, n: int) -> list[str]:
    return [r[0] for r in conn.execute(
        sql.SQL("SELECT case_id FROM {} ORDER BY indexed_on DESC, case_id DESC LIMIT %s").format(_raw(space, "cases")), (n,)
    )]


def test_a_full_pass_short_of_what_the_server_counted_is_flagged_and_strict_fails_it(space_factory, conn):
    """Records the server counted at the first page but did not return (deleted during the pass) leave
    the pass short: flagged as incomplete with its size, and with DATA_EXPLORER_STRICT_COUNTS a failed
    run that publishes nothing."""
    space = space_factory(cases=120)
    small = {"COMMCARE_CASE_PAGE_SIZE": 10}
    assert space.run(**small).phase == "Succeeded"
    published = space.published(conn)
    # deleted once the first two pages were served: counted by the first page, never returned
    space.sim.mutate(space.domain, delete_case_ids=_last_cases(conn, space, 3), visible_after=2)
    strict = space.run(full=True, DATA_EXPLORER_STRICT_COUNTS="true", **small)
    assert strict.phase == "Failed" and strict.error["code"] == "INCOMPLETE_LOAD", strict.error
    assert "cases: server 120, stored 117 (3 missing)" in strict.error["message"]
    assert space.published(conn) == published  # nothing published

    flagged = space.run(**small)  # not strict: published, and flagged where agents look
    assert flagged.phase == "Succeeded", flagged.error
    assert flagged.phases["load"]["cases"]["counts"] == {"server": 120, "received": 117, "stored": 117, "missing": 3}
    assert incomplete_sources(flagged.phases["load"]) == {"cases": "cases: server 120, stored 117 (3 missing)"}
    again = space.run(full=True, **small)  # a full pass that receives all the server counts clears it
    assert again.phase == "Succeeded", again.error
    assert incomplete_sources(again.phases["load"]) == {}
