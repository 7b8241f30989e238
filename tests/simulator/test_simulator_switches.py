"""The app and form switches of a project space: off by default, and what CommCare serves when on."""

from __future__ import annotations

import httpx
import pytest
from simulator_helpers import DOMAIN, all_cases, api_key

from data_explorer.loaders.commcare.forms import case_id_of, find_case_blocks
from data_explorer.loaders.commcare.xforms import case_updates
from data_explorer.simulator import RunningSimulator, demo_config

APPS = f"/a/{DOMAIN}/api/v0.5/application/"
FORMS = f"/a/{DOMAIN}/api/v0.5/form/"


@pytest.fixture(scope="module")
def switched():
    """One space with every switch on, one with none."""
    on = dict(property_paths=True, copied_app=True, casexml_v1=True, renamed_questions=True)
    with RunningSimulator(demo_config(cases=96, forms=140, users=3, domains=(DOMAIN,), **on)) as on_sim, \
            RunningSimulator(demo_config(cases=96, forms=140, users=3, domains=(DOMAIN,))) as off_sim:
        clients = {flag: httpx.Client(base_url=s.base_url, headers=api_key(), timeout=30)
                   for flag, s in (("on", on_sim), ("off", off_sim))}
        yield clients
        for c in clients.values():
            c.close()


def _forms(client: httpx.Client) -> list[dict]:
    return client.get(FORMS, params={"limit": 1000, "include_archived": "true"}).json()["objects"]


def test_modules_list_name_and_the_indexed_cases_properties(switched):
    for flag, client in switched.items():
        listed = {m["case_type"]: set(m["case_properties"]) for app in client.get(APPS).json()["objects"]
                  for m in app["modules"]}
        cases, _ = all_cases(client, {"limit": 5000})
        carried: dict[str, set[str]] = {}
        for case in cases:
            carried.setdefault(case["case_type"], set()).update(case["properties"])
        if flag == "off":
            assert listed == carried
            continue
        for case_type, props in listed.items():
            paths = {p for p in props if "/" in p}
            assert props - paths - {"name"} == carried[case_type] and "name" in props
        assert {"parent/village", "parent/district"} <= listed["patient"] and "host/dob" in listed["visit"]
        assert not any("/" in p for p in listed["household"])  # a household indexes no case


def test_a_copied_app_keeps_the_xmlns_and_forms_come_from_both(switched):
    apps = {flag: client.get(APPS).json()["objects"] for flag, client in switched.items()}
    assert len(apps["off"]) == 2 and len(apps["on"]) == 3
    original, copy = apps["on"][0], apps["on"][2]
    assert copy["id"] != original["id"] and copy["name"] == original["name"] + " (copy)"
    xmlns = [[f["xmlns"] for m in app["modules"] for f in m["forms"]] for app in (original, copy)]
    assert xmlns[0] == xmlns[1]
    forms = _forms(switched["on"])
    by_app = {}
    for form in forms:
        if form["form"]["@xmlns"] in xmlns[0]:
            by_app.setdefault(form["app_id"], set()).add(form["form"]["@xmlns"])
    assert set(by_app) == {original["id"], copy["id"]} and by_app[copy["id"]] == set(xmlns[0])
    builds = {f["build_id"] for f in forms if f["app_id"] == copy["id"]}
    assert builds == {next(v["id"] for v in copy["versions"] if v["is_released"])}
    only_copy = switched["on"].get(FORMS, params={"app_id": copy["id"], "limit": 1000, "include_archived": "1"})
    assert {f["id"] for f in only_copy.json()["objects"]} == {f["id"] for f in forms if f["app_id"] == copy["id"]}


def test_casexml_1_0_blocks_carry_the_case_id_as_an_element(switched):
    cases = {c["case_id"] for c in all_cases(switched["on"], {"limit": 5000})[0]}
    versions: dict[str, set[str]] = {}
    for flag, client in switched.items():
        for form in _forms(client):
            for _, block in find_case_blocks(form["form"]):
                version = "2.0" if "@case_id" in block else "1.0"
                versions.setdefault(flag, set()).add(version)
                if flag == "on":
                    assert case_id_of(block) in cases
                if version == "1.0":
                    assert form["form"]["@name"] == "Update Household"
                    assert "index" not in block and "@xmlns" not in block and "date_modified" in block
    assert versions == {"on": {"1.0", "2.0"}, "off": {"2.0"}}


def _xform_url(app_id: str, module: int, form: int) -> str:
    return f"/a/{DOMAIN}/apps/download/{app_id}/modules-{module}/forms-{form}.xml"


def test_forms_xml_says_which_question_saves_each_property_as_the_data_shows(switched):
    """Served without a credential, as CommCare serves app downloads; with renamed questions only the XML
    ties a question to the property it saves, and every form submitted agrees with it."""
    for flag, client in switched.items():
        saved_from: dict[str, dict[str, str]] = {}  # xmlns -> property -> question at the top level
        for app in client.get(APPS).json()["objects"]:
            for m, module in enumerate(app["modules"]):
                for f, form in enumerate(module["forms"]):
                    response = httpx.get(str(client.base_url.join(_xform_url(app["id"], m, f))), timeout=30)
                    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
                    updates = case_updates(response.content, module["case_type"])
                    paths = {q["value"] for q in form["questions"]}
                    assert updates and all(u.question in paths for u in updates)
                    saved_from[form["xmlns"]] = {u.property: u.question[len("/data/"):] for u in updates
                                                 if u.question.count("/") == 2 and u.case_type == module["case_type"]}
        renamed = {p: q for props in saved_from.values() for p, q in props.items() if p != q}
        assert renamed == ({"phone_number": "contact_phone", "notes": "remarks", "weight_kg": "weight",
                            "household_size": "hh_members"} if flag == "on" else {})
        for form in _forms(client):
            block = form["form"].get("case")
            for prop, question in saved_from[form["form"]["@xmlns"]].items():
                if isinstance(block, dict) and isinstance(block.get("update"), dict) and prop in block["update"]:
                    assert block["update"][prop] == form["form"][question]


def test_forms_xml_is_not_found_for_what_the_space_does_not_have(switched):
    client = switched["off"]
    app_id = client.get(APPS).json()["objects"][0]["id"]
    for url in (_xform_url(app_id, 0, 9), _xform_url(app_id, 9, 0), _xform_url("no-such-app", 0, 0),
                _xform_url(app_id, 0, 0).replace(DOMAIN, "no-such-space")):
        assert httpx.get(str(client.base_url.join(url)), timeout=30).status_code == 404
