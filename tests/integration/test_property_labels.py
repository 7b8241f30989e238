"""Property labels from the question that saves each property, read from the forms' XML over HTTP; reused
while the app is unchanged; a guess by name, with a warning, where the XML cannot be read."""

from __future__ import annotations

from psycopg import sql

from data_explorer.simulator import FaultConfig, FaultRule

# questions the simulator names apart from the property they save (``renamed_questions``), and their labels
SAVED_BY = {
    ("patient", "phone_number"): "Phone number",
    ("patient", "notes"): "Notes 📝",
    ("visit", "weight_kg"): "Weight (kg)",
    ("household", "household_size"): "People in the household",
}


def _labels(conn, space) -> dict[tuple[str, str], str | None]:
    rows = conn.execute(
        sql.SQL("SELECT c.case_type, p->>'name', p->>'label' FROM {}.case_types c,"
                " jsonb_array_elements(c.properties) p").format(sql.Identifier(space.names.schema))
    ).fetchall()
    return {(t, p): label for t, p, label in rows}


def _xform_requests(space) -> int:
    return sum(space.sim.stats()["requests"].get("xform", {}).values())


def test_labels_come_from_the_question_that_saves_each_property(space_factory, conn):
    space = space_factory(cases=64, forms=64, users=3, renamed_questions=True)
    status = space.run()
    assert status.phase == "Succeeded", status.error
    labels = _labels(conn, space)
    assert {key: labels[key] for key in SAVED_BY} == SAVED_BY
    assert all(labels.values()), [key for key, label in labels.items() if not label]  # every property labelled
    assert status.phases["discover"]["warnings"] == []
    forms = _xform_requests(space)
    assert forms == 7  # one per form of the two apps
    updates = conn.execute(
        sql.SQL("SELECT case_updates FROM {}.form_submissions WHERE form_name = 'Register Patient'").format(
            sql.Identifier(space.names.schema))
    ).fetchone()[0]
    assert {"case_type": "patient", "property": "phone_number", "question": "/data/contact_phone"} in updates
    comment = conn.execute("SELECT col_description(%s::regclass, a.attnum) FROM pg_attribute a"
                           " WHERE a.attrelid = %s::regclass AND a.attname = 'phone_number'",
                           (f"{space.names.schema}.case_patient",) * 2).fetchone()[0]
    assert "Phone number" in comment  # where agents read it

    again = space.run()  # the apps are unchanged: what was read is reused
    assert again.phase == "Succeeded", again.error
    assert _xform_requests(space) == forms and _labels(conn, space) == labels
    assert again.phases["transform"]["mode"] == "incremental"  # what was reused plans as before: no full build
    full = space.run(full=True)  # a full run reads every form's XML again
    assert full.phase == "Succeeded", full.error
    assert _xform_requests(space) == 2 * forms and _labels(conn, space) == labels


def test_without_the_forms_xml_labels_are_a_guess_by_name_and_discover_says_so(space_factory, conn):
    space = space_factory(cases=64, forms=64, users=3, renamed_questions=True,
                          faults=FaultConfig(rules=(FaultRule("html_error", 1.0, "xforms"),)))
    status = space.run()
    assert status.phase == "Succeeded", status.error
    warnings = status.phases["discover"]["warnings"]
    assert len(warnings) == 2 and all("could not be read" in w and "a guess" in w for w in warnings)
    labels = _labels(conn, space)
    assert labels[("patient", "phone_number")] is None  # no question is named as the property
    assert labels[("patient", "dob")] == "Date of birth"  # one is
