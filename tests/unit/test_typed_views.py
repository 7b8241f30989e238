from pathlib import Path

from data_explorer.loaders.commcare.applications import build_metadata, form_definition_rows
from data_explorer.pipelines.registry import Registry
from data_explorer.transform.comments import table_comments
from data_explorer.transform.dbt import typed_view_model
from data_explorer.transform.typed_views import BASE_COLUMNS, plan_typed_views

APPS = [
    {
        "id": "app1", "name": "Santé", "version": 3,
        "modules": [
            {"name": {"en": "Patients"}, "case_type": "patient",
             "case_properties": ["dob", "Weight-KG", "case_name", "x'; drop", "Größe", "体重", "name", "parent/village",
                                 "parent/parent/district"],
             "forms": [{"xmlns": "http://x/reg", "name": {"en": "Register", "fr": "Inscrire"},
                        "questions": [{"label": "Date of birth", "value": "/data/dob", "type": "Date"},
                                      {"label": "Weight", "value": "/data/Weight-KG", "type": "Decimal"}]}]},
            {"error": "could not serialise"},
            {"name": "Types", "case_type": "types", "case_properties": [], "forms": []},
            {"name": "Odd", "case_type": "{{ run_query('x') }}", "case_properties": ["{% raw %}"], "forms": []},
        ],
    }
]


def test_metadata_labels_properties_from_questions():
    meta = build_metadata("demo", APPS)
    props = meta["case_types"]["patient"]["properties"]
    assert props["dob"] == {"label": "Date of birth", "question": "/data/dob", "type": "Date"}
    assert props["Weight-KG"]["label"] == "Weight"
    assert [(f["app_id"], f["xmlns"], f["name"]) for f in meta["forms"]] == [("app1", "http://x/reg", "Register")]
    assert meta["apps"][0]["name"] == "Santé"
    assert any("could not serialise" in w for w in meta["warnings"])


def test_name_and_paths_through_indices_are_not_properties_of_the_case_type():
    """CommCare lists ``name`` (the case name, a column already) and the indexed case's properties as
    paths; the typed view and case_type_properties hold neither."""
    meta = build_metadata("demo", APPS)
    assert set(meta["case_types"]["patient"]["properties"]) == {"dob", "Weight-KG", "case_name", "x'; drop", "Größe", "体重"}
    _, properties = plan_typed_views(meta, "case_", set())
    assert not [p for p in properties if p[1] == "name" or "/" in p[1]]


def test_a_copied_app_keeps_its_forms_xmlns_and_each_app_keeps_its_definition():
    copy = {**APPS[0], "id": "app2", "name": "Santé (copy)", "modules": [APPS[0]["modules"][0]]}
    meta = build_metadata("demo", [*APPS, copy])
    assert [(f["app_id"], f["xmlns"], f["app_name"]) for f in meta["forms"]] == [
        ("app1", "http://x/reg", "Santé"), ("app2", "http://x/reg", "Santé (copy)"),
    ]
    rows = form_definition_rows(meta)
    assert len({(r[2], r[0]) for r in rows}) == len(rows) == 2  # (app_id, xmlns) is the key
    apps = {a["id"] for a in meta["case_types"]["patient"]["apps"]}
    assert apps == {"app1", "app2"}


def test_view_and_column_names_are_derived_safely():
    meta = build_metadata("demo", APPS)
    definitions, properties = plan_typed_views(meta, "case_", {"cases", "case_types", "users"})
    views = {d[0]: d[1] for d in definitions}
    assert views["patient"] == "case_patient"
    assert views["types"] == "case_types_2"  # the model case_types keeps its name
    assert all(v.replace("_", "").isalnum() and v.isascii() for v in views.values())
    columns = {(p[0], p[1]): (p[2], p[3]) for p in properties}
    assert columns[("patient", "dob")] == ("dob", "date")
    assert columns[("patient", "Weight-KG")] == ("weight_kg", "numeric")
    assert columns[("patient", "case_name")][0] == "p_case_name"  # would clash with a base column
    assert columns[("patient", "x'; drop")][0] == "x_drop"
    assert columns[("patient", "Größe")][0] == "groe"
    assert columns[("patient", "体重")][0].startswith("property_")
    assert all(c[0] not in BASE_COLUMNS for c in columns.values())
    for view in views.values():
        assert "{{ case_type_view('%s') }}" % view in typed_view_model(view)


def test_comments_describe_views_from_the_apps():
    pipeline = Registry.from_directory(Path(__file__).resolve().parents[2] / "pipelines").get("commcare_sync")
    meta = build_metadata("demo", APPS)
    definitions, properties = plan_typed_views(meta, "case_", {m.name for m in pipeline.models})
    comments = {(r, c): t for r, c, t in table_comments(pipeline, definitions, properties)}
    assert comments[("case_patient", "dob")].startswith("Date of birth — case property 'dob'")
    assert "read as date" in comments[("case_patient", "dob")]
    assert comments[("case_patient", None)].startswith("Cases of type patient")
    assert comments[("cases", "case_id")] == "Case id (primary key)."


def test_the_work_copy_of_the_project_follows_the_source(tmp_path):
    from data_explorer.transform.dbt import DbtTarget, prepare_project

    source = tmp_path / "src"
    (source / "models").mkdir(parents=True)
    (source / "models" / "a.sql").write_text("select 1")
    (source / "models" / "b.sql").write_text("select 2")
    (source / "dbt_project.yml").write_text("name: x\n")
    target = DbtTarget("h", "5432", "u", "secret-pw", "db", "s__build", "w")
    project = prepare_project(source, tmp_path / "work", ["case_x"], target, threads=2)
    (project / "target").mkdir()
    (project / "target" / "partial_parse.msgpack").write_text("state")
    (source / "models" / "b.sql").unlink()
    project = prepare_project(source, tmp_path / "work", [], target, threads=2)
    assert sorted(p.name for p in (project / "models").rglob("*.sql")) == ["a.sql"]
    assert (project / "target" / "partial_parse.msgpack").read_text() == "state"
    profile = (project / "profiles.yml").read_text()
    assert "secret-pw" not in profile and "env_var" in profile
    assert oct((project / "profiles.yml").stat().st_mode & 0o777) == "0o600"
