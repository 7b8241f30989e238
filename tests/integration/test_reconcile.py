"""Cases and forms deleted in CommCare leave the published tables: the reconcile step against the simulator
over HTTP (deletions simply stop being returned, as in CommCare) and the real PostgreSQL."""

from __future__ import annotations

from psycopg import sql


def _ids(conn, space, table: str, key: str) -> set[str]:
    return {r[0] for r in conn.execute(sql.SQL("SELECT {} FROM {}").format(sql.Identifier(key), sql.Identifier(space.names.schema, table)))}


def test_deleted_cases_and_forms_leave_the_published_tables_on_demand(space_factory, conn):
    space = space_factory(cases=600)
    assert space.run().phase == "Succeeded"
    cases, forms = _ids(conn, space, "cases", "case_id"), _ids(conn, space, "forms", "form_id")
    gone_cases, gone_forms = sorted(cases)[10:13], sorted(forms)[20:22]
    space.sim.mutate(space.domain, delete_case_ids=gone_cases, delete_form_ids=gone_forms)

    quiet = space.run()  # the last look was at the full pass: nothing is due, nothing removed
    assert quiet.phase == "Succeeded", quiet.error
    assert "reconcile" not in quiet.phases["load"]["cases"]
    assert set(gone_cases) <= _ids(conn, space, "cases", "case_id")

    status = space.run(reconcile=True)
    assert status.phase == "Succeeded", status.error
    load = status.phases["load"]
    assert load["cases"]["reconcile"]["removed"] == 3 and load["forms"]["reconcile"]["removed"] == 2
    assert load["cases"]["reconcile"]["complete"] and load["forms"]["reconcile"]["complete"]
    assert _ids(conn, space, "cases", "case_id") == cases - set(gone_cases)
    assert _ids(conn, space, "forms", "form_id") == forms - set(gone_forms)
    assert not _ids(conn, space, "form_case_actions", "form_id") & set(gone_forms)
    expected = space.expected()
    assert space.count(conn, "cases") == expected["cases"] and space.count(conn, "forms") == expected["forms"]
    # bounded: about log2(records / page) requests per deleted record, not a re-read of everything
    assert load["cases"]["reconcile"]["requests"] <= 3 * 12 and load["forms"]["reconcile"]["requests"] <= 2 * 12


def test_a_project_space_with_nothing_deleted_costs_one_request_per_source(space, conn):
    assert space.run().phase == "Succeeded"
    status = space.run(DATA_EXPLORER_RECONCILE_HOURS=0)  # due at every run
    assert status.phase == "Succeeded", status.error
    for source in ("cases", "forms"):
        reconciled = status.phases["load"][source]["reconcile"]
        assert {k: reconciled[k] for k in ("requests", "removed", "complete")} == {"requests": 1, "removed": 0, "complete": True}


def test_the_request_bound_leaves_the_rest_to_the_next_run(space_factory, conn):
    space = space_factory(cases=600)
    assert space.run().phase == "Succeeded"
    cases = sorted(_ids(conn, space, "cases", "case_id"))
    gone = cases[::97]
    space.sim.mutate(space.domain, delete_case_ids=gone)
    small = {"COMMCARE_CASE_PAGE_SIZE": 50}  # ranges are listed once they hold a page: many ranges here
    first = space.run(reconcile=True, DATA_EXPLORER_RECONCILE_MAX_REQUESTS=2, **small)
    assert first.phase == "Succeeded", first.error
    assert first.phases["load"]["cases"]["reconcile"]["complete"] is False
    later = space.run(DATA_EXPLORER_RECONCILE_MAX_REQUESTS=1000, **small)  # not complete before: still due
    assert later.phase == "Succeeded", later.error
    assert later.phases["load"]["cases"]["reconcile"]["complete"] is True
    assert first.phases["load"]["cases"]["reconcile"]["removed"] + later.phases["load"]["cases"]["reconcile"]["removed"] == len(gone)
    assert _ids(conn, space, "cases", "case_id") == set(cases) - set(gone)


def test_an_archived_form_leaves_the_case_actions_and_counts_and_comes_back_unarchived(space, conn):
    assert space.run().phase == "Succeeded"
    schema = space.names.schema
    form_id, app_id, xmlns = conn.execute(sql.SQL(
        "SELECT f.form_id, f.app_id, f.xmlns FROM {} f JOIN {} a USING (form_id) WHERE NOT f.archived ORDER BY 1 LIMIT 1"
    ).format(sql.Identifier(schema, "forms"), sql.Identifier(schema, "form_case_actions"))).fetchone()

    def actions() -> int:
        return conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE form_id = %s").format(sql.Identifier(schema, "form_case_actions")),
                            (form_id,)).fetchone()[0]

    def submissions() -> int:
        return conn.execute(sql.SQL("SELECT submissions FROM {} WHERE app_id = %s AND xmlns = %s").format(
            sql.Identifier(schema, "form_submissions")), (app_id, xmlns)).fetchone()[0]

    before, counted = actions(), submissions()
    assert before > 0
    space.sim.mutate(space.domain, archive_form_ids=[form_id])
    assert space.run().phase == "Succeeded"
    assert conn.execute(sql.SQL("SELECT archived FROM {} WHERE form_id = %s").format(sql.Identifier(schema, "forms")),
                        (form_id,)).fetchone()[0] is True
    assert actions() == 0 and submissions() == counted - 1
    space.sim.mutate(space.domain, unarchive_form_ids=[form_id])
    assert space.run().phase == "Succeeded"
    assert actions() == before and submissions() == counted
