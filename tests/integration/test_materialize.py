"""discover -> load -> transform -> publish against the simulator over HTTP and the real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql


def test_a_first_run_publishes_exactly_what_the_project_space_holds(space, conn):
    status = space.run()
    assert status.phase == "Succeeded", status.error
    expected = space.expected()
    for table in ("cases", "forms", "users"):
        assert space.count(conn, table) == expected[table], table
    loaded = status.phases["load"]
    assert {name: loaded[name]["rows"] for name in expected} == expected
    assert all(loaded[name]["mode"] == "full" for name in expected)
    assert status.progress == {"current": 100, "total": 100, "message": "published"}
    models = status.phases["transform"]["models"]
    assert {"cases", "case_indices", "forms", "form_case_actions", "users", "case_types", "form_submissions"} <= set(models)
    assert all(m["state"] == "success" for m in models.values())
    # the run's row in the control table says the same
    row = conn.execute("SELECT phase, phases, progress, error FROM data_explorer.runs WHERE run_id = %s", (status.run_id,)).fetchone()
    assert row[0] == "Succeeded" and row[1]["load"]["cases"]["rows"] == expected["cases"] and row[3] is None


def test_typed_views_have_a_described_column_per_property(space, conn):
    assert space.run().phase == "Succeeded"
    schema = space.names.schema
    types = conn.execute(
        sql.SQL("SELECT case_type, view_name, property_count, cases_total FROM {}.case_types ORDER BY 1").format(sql.Identifier(schema))
    ).fetchall()
    assert len(types) >= 3
    assert sum(t[3] for t in types) == space.expected()["cases"]
    metadata = conn.execute(
        "SELECT metadata FROM data_explorer.tenant_metadata WHERE domain = %s", (space.domain,)
    ).fetchone()[0]
    for case_type, view, property_count, total in types:
        declared = metadata["case_types"][case_type]["properties"]
        assert property_count == len(declared)
        columns = conn.execute(
            "SELECT column_name, col_description((table_schema || '.' || table_name)::regclass, ordinal_position)"
            " FROM information_schema.columns WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, view),
        ).fetchall()
        assert len(columns) == 9 + len(declared)
        assert all(description for _, description in columns), f"{view} has undescribed columns"
        labelled = [d for _, d in columns if "case property" in d and " — " in d]
        assert labelled, f"{view}: no column carries a label from the app definitions"
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(view))).fetchone()[0] == total
    table_comment = conn.execute("SELECT obj_description(%s::regclass)", (f"{schema}.cases",)).fetchone()[0]
    assert table_comment.startswith("Every case")


def test_nested_case_blocks_become_form_to_case_rows(space, conn):
    assert space.run().phase == "Succeeded"
    schema = sql.Identifier(space.names.schema)
    actions = dict(conn.execute(sql.SQL("SELECT action, count(*) FROM {}.form_case_actions GROUP BY 1").format(schema)).fetchall())
    assert {"create", "update", "close", "index"} <= set(actions)
    in_repeats = conn.execute(sql.SQL("SELECT count(*) FROM {}.form_case_actions WHERE path LIKE '%%]%%'").format(schema)).fetchone()[0]
    assert in_repeats > 0
    per_form = conn.execute(
        sql.SQL("SELECT max(n) FROM (SELECT form_id, count(DISTINCT case_id) n FROM {}.form_case_actions GROUP BY 1) t").format(schema)
    ).fetchone()[0]
    assert per_form > 1
    extension = conn.execute(
        sql.SQL("SELECT count(*) FROM {}.form_case_actions WHERE action = 'index' AND payload::text LIKE '%%extension%%'").format(schema)
    ).fetchone()[0]
    assert extension > 0
    relationships = dict(conn.execute(sql.SQL("SELECT relationship, count(*) FROM {}.case_indices GROUP BY 1").format(schema)).fetchall())
    assert relationships.get("child") and relationships.get("extension")
    orphans = conn.execute(
        sql.SQL("SELECT count(*) FROM {0}.form_case_actions a LEFT JOIN {0}.forms f USING (form_id) WHERE f.form_id IS NULL").format(schema)
    ).fetchone()[0]
    assert orphans == 0


def test_apps_and_blocks_as_commcare_serves_them(space_factory, conn):
    """Modules listing name and parent/host paths, a copied app with the same xmlns, CaseXML 1.0 blocks."""
    space = space_factory(cases=160, forms=210, property_paths=True, copied_app=True, casexml_v1=True)
    status = space.run()
    assert status.phase == "Succeeded", status.error
    schema, raw = sql.Identifier(space.names.schema), sql.Identifier(space.names.raw_schema)
    listed = conn.execute(sql.SQL("SELECT property FROM {}.case_type_properties").format(raw)).fetchall()
    assert listed and not [p for (p,) in listed if p == "name" or "/" in p]
    columns = {c for (c,) in conn.execute(
        r"SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name LIKE 'case\_%%'",
        (space.names.schema,))}
    paths = [c for c in columns if c.startswith(("parent_", "host_")) and c not in ("parent_case_id", "host_case_id")]
    assert "village" in columns and "dob" in columns and not paths and not columns & {"name", "p_name"}
    # one form_submissions row per definition; every form joins to exactly one, on app and xmlns
    definitions = conn.execute(sql.SQL("SELECT count(*) FROM {}.form_definitions").format(raw)).fetchone()[0]
    per_app = conn.execute(sql.SQL(
        "SELECT count(*), count(DISTINCT xmlns), sum(submissions) FROM {}.form_submissions").format(schema)).fetchone()
    assert per_app[0] == definitions == 7 + 4 and per_app[1] == 7  # the copy's four forms keep their xmlns
    archived = conn.execute(sql.SQL("SELECT count(*) FROM {}.forms WHERE archived").format(schema)).fetchone()[0]
    assert per_app[2] == space.count(conn, "forms") - archived  # archived forms are not counted as submissions
    joined = conn.execute(sql.SQL(
        "SELECT count(*), count(DISTINCT f.form_id) FROM {0}.forms f"
        " JOIN {0}.form_submissions s ON s.app_id = f.app_id AND s.xmlns = f.xmlns").format(schema)).fetchone()
    assert joined == (space.count(conn, "forms"),) * 2
    copied = conn.execute(sql.SQL(
        "SELECT min(submissions) FROM {}.form_submissions WHERE app_name LIKE '%%(copy)'").format(schema)).fetchone()[0]
    assert copied > 0
    # CaseXML 1.0 blocks become actions like 2.0 ones: every Update Household form updates its household
    missing = conn.execute(sql.SQL(
        "SELECT count(*) FROM {0}.forms f WHERE f.form_name = 'Update Household' AND NOT f.archived AND NOT EXISTS"
        " (SELECT 1 FROM {0}.form_case_actions a WHERE a.form_id = f.form_id AND a.path = 'form.case'"
        " AND a.action = 'update' AND a.case_type = 'household')").format(schema)).fetchone()[0]
    v1 = conn.execute(sql.SQL(
        "SELECT count(*) FROM {}.forms WHERE form_name = 'Update Household' AND form -> 'case' ? 'case_id'").format(schema)
    ).fetchone()[0]
    assert v1 > 0 and missing == 0


def _loaded(conn, space):
    return dict(conn.execute(
        sql.SQL("SELECT case_id, _loaded_at FROM {}.cases").format(sql.Identifier(space.names.raw_schema))
    ).fetchall())


def test_incremental_runs_load_exactly_what_changed(space, conn):
    import httpx

    assert space.run().phase == "Succeeded"
    before = _loaded(conn, space)
    changed = space.sim.mutate(space.domain, update_cases=10)["updated_case_ids"]
    status = space.run()
    assert status.phase == "Succeeded", status.error
    assert status.phases["load"]["cases"]["rows"] == 10
    assert status.phases["load"]["cases"]["mode"] == "incremental"
    assert status.phases["load"]["forms"]["rows"] == 0
    assert space.count(conn, "cases") == space.expected()["cases"]
    after = _loaded(conn, space)
    assert {case_id for case_id in after if after[case_id] != before[case_id]} == set(changed)
    for case_id in changed[:3]:  # and they carry the new values
        served = httpx.get(
            f"{space.sim.base_url}/a/{space.domain}/api/case/v2/{case_id}", headers={"Authorization": space.sim.api_key_header()}
        ).json()
        row = conn.execute(
            sql.SQL("SELECT properties, indexed_on FROM {}.cases WHERE case_id = %s").format(sql.Identifier(space.names.raw_schema)),
            (case_id,),
        ).fetchone()
        assert row[0] == served["properties"]

    touched = space.sim.mutate(space.domain, new_cases=7, new_forms=5)
    status = space.run()
    assert status.phase == "Succeeded", status.error
    expected = space.expected()
    assert status.phases["load"]["forms"]["rows"] == 5
    assert status.phases["load"]["cases"]["rows"] >= 7  # new cases, plus any the new forms updated
    for table in ("cases", "forms", "users"):
        assert space.count(conn, table) == expected[table]
    schema = sql.Identifier(space.names.schema)
    dupes = conn.execute(sql.SQL("SELECT count(*) - count(DISTINCT case_id) FROM {}.cases").format(schema)).fetchone()[0]
    assert dupes == 0
    assert touched  # the simulator said what it changed


def test_full_forces_a_complete_reload(space, conn):
    assert space.run().phase == "Succeeded"
    status = space.run(full=True)
    assert status.phase == "Succeeded"
    assert status.phases["load"]["cases"]["mode"] == "full"
    assert status.phases["load"]["cases"]["rows"] == space.expected()["cases"]
    assert space.count(conn, "cases") == space.expected()["cases"]


def test_a_last_page_exactly_full_costs_one_empty_request(space_factory, conn):
    space = space_factory(cases=200, forms=100)
    status = space.run(COMMCARE_CASE_PAGE_SIZE=50, COMMCARE_FORM_PAGE_SIZE=25)
    assert status.phase == "Succeeded", status.error
    assert space.count(conn, "cases") == 200
    assert space.count(conn, "forms") == space.expected()["forms"]
    stats = space.sim.stats()
    assert stats["requests"]["cases"] == {"200": 200 // 50 + 1}  # four full pages, then the empty one without `next`


def test_a_failed_source_resumes_from_its_checkpoint(space, conn):
    space.sim.set_faults({"rules": [{"kind": "unauthorized", "rate": 1.0, "scope": "forms"}]})
    failed = space.run()
    assert failed.phase == "Failed" and failed.error["code"] == "AUTH_FAILED"
    assert failed.phases["load"]["cases"]["state"] == "done"
    space.sim.set_faults({})
    status = space.run()
    assert status.phase == "Succeeded", status.error
    assert status.phases["load"]["cases"]["rows"] == 0  # already loaded by the failed run
    assert status.phases["load"]["forms"]["rows"] == space.expected()["forms"]
    assert space.count(conn, "cases") == space.expected()["cases"]


def test_reader_sees_the_published_tables_and_nothing_private(space, conn):
    assert space.run().phase == "Succeeded"
    names = space.names
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(names.reader_role)))
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}.case_types").format(sql.Identifier(names.schema))).fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SELECT count(*) FROM {}.cases").format(sql.Identifier(names.raw_schema)))
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(names.reader_role)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM data_explorer.runs")


def test_an_oauth_access_token_works_and_its_expiry_is_an_auth_error(space, conn):
    import httpx

    from data_explorer.simulator import DEMO_API_KEY, DEMO_USER

    token = httpx.post(
        f"{space.sim.base_url}/oauth/token/",
        data={"grant_type": "password", "username": DEMO_USER, "password": DEMO_API_KEY, "client_id": "data-explorer"},
    ).json()["access_token"]
    env = {"COMMCARE_API_KEY": "", "COMMCARE_USERNAME": "", "COMMCARE_OAUTH_TOKEN": token}
    status = space.run(**env)
    assert status.phase == "Succeeded", status.error
    assert space.count(conn, "cases") == space.expected()["cases"]
    space.sim.advance_clock(16 * 60)  # past the 15-minute lifetime
    status = space.run(**env)
    assert status.phase == "Failed" and status.error["code"] == "AUTH_FAILED"
    assert "OAuth access token" in status.error["message"] and token not in status.error["message"]


def test_tenant_metadata_survives_teardown(space, conn):
    from data_explorer.warehouse.provisioning import teardown_tenant

    assert space.run().phase == "Succeeded"
    teardown_tenant(conn, space.names, "data_explorer")
    assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (space.names.schema,)).fetchone()[0] == 0
    metadata = conn.execute("SELECT metadata FROM data_explorer.tenant_metadata WHERE domain = %s", (space.domain,)).fetchone()[0]
    assert len(metadata["case_types"]) >= 3 and metadata["forms"]
    status = space.run()  # and the tenant comes back whole
    assert status.phase == "Succeeded" and status.phases["load"]["cases"]["mode"] == "full"
    assert space.count(conn, "cases") == space.expected()["cases"]


def test_the_order_of_columns_in_the_pipeline_file_does_not_move_data(space, conn, tmp_path):
    from pathlib import Path

    import yaml

    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "pipelines" / "commcare_sync.yml").read_text())
    for source in data["sources"]:
        for table in source["tables"]:
            table["columns"].reverse()
    (tmp_path / "commcare_sync.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert space.run(DATA_EXPLORER_PIPELINES_DIR=tmp_path).phase == "Succeeded"
    schema = sql.Identifier(space.names.schema)
    misplaced = conn.execute(
        sql.SQL("SELECT count(*) FROM {}.cases WHERE case_name LIKE 'HH-%%' OR external_id NOT LIKE '%%-%%'").format(schema)
    ).fetchone()[0]
    assert misplaced == 0
    assert conn.execute(sql.SQL("SELECT count(*) FROM {}.cases WHERE external_id LIKE 'HH-%%'").format(schema)).fetchone()[0] > 0
