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
