"""The app and form switches of a project space: off by default, and what CommCare serves when on."""

from __future__ import annotations

import httpx
import pytest
from simulator_helpers import DOMAIN, all_cases, api_key

from data_explorer.loaders.commcare.forms import case_id_of, find_case_blocks
from data_explorer.simulator import RunningSimulator, demo_config

APPS = f"/a/{DOMAIN}/api/v0.5/application/"
FORMS = f"/a/{DOMAIN}/api/v0.5/form/"


@pytest.fixture(scope="module")
def switched():
    """One space with every switch on, one with none."""
    on = dict(property_paths=True, copied_app=True, casexml_v1=True)
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
    assert builds == {next(v["build_id"] for v in copy["versions"] if v["is_released"])}
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
