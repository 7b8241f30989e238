"""User and Application APIs: paging, filters, and app definitions that describe exactly the data served."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from simulator_helpers import DOMAIN, all_cases

from data_explorer.simulator import DEMO_USER

from data_explorer.loaders.commcare.applications import build_metadata
from data_explorer.loaders.commcare.forms import find_case_blocks

USERS = f"/a/{DOMAIN}/api/v0.5/user/"
WEB_USERS = f"/a/{DOMAIN}/api/v0.5/web-user/"
APPS = f"/a/{DOMAIN}/api/v0.5/application/"


def test_user_paging_and_fields(client):
    users, path, query = [], USERS, {"limit": 6}
    while True:
        body = client.get(path, params=query).json()
        users += body["objects"]
        if not body["meta"]["next"]:
            break
        path, query = urlsplit(body["meta"]["next"]).path, dict(parse_qsl(urlsplit(body["meta"]["next"]).query))
    assert len(users) == 19 == body["meta"]["total_count"]  # 20 workers, one of them deactivated
    assert len({u["id"] for u in users}) == 19
    fields = {"id", "username", "first_name", "last_name", "default_phone_number", "email", "phone_numbers", "groups",
              "primary_location", "locations", "user_data", "resource_uri"}
    assert all(set(u) == fields for u in users)
    assert all(u["username"].endswith(f"@{DOMAIN}.commcarehq.org") and u["username"].isascii() for u in users)
    assert client.get(f"/a/{DOMAIN}/api/user/v1/", params={"limit": 100}).json()["objects"] == \
        client.get(USERS, params={"limit": 100}).json()["objects"]


def test_user_filters_and_extras(client):
    everyone = client.get(USERS, params={"limit": 100}).json()["objects"]
    group = everyone[0]["groups"][0]
    in_group = client.get(USERS, params={"limit": 100, "group": group}).json()["objects"]
    assert in_group == [u for u in everyone if group in u["groups"]]
    archived = client.get(USERS, params={"archived": "true"}).json()["objects"]
    assert len(archived) == 1 and archived[0]["id"] not in {u["id"] for u in everyone}
    extras = client.get(USERS, params={"extras": "true", "limit": 1}).json()["objects"][0]["extras"]
    assert {"submitted_last_30", "completed_last_30"} <= set(extras)
    one = everyone[3]
    assert client.get(f"{USERS}{one['id']}/").json() == one
    assert client.get(f"{USERS}nobody/").status_code == 404


def test_case_owners_and_submitters_are_users(client):
    active = {u["id"]: u for u in client.get(USERS, params={"limit": 100, "archived": "false"}).json()["objects"]}
    deactivated = {u["id"]: u for u in client.get(USERS, params={"archived": "true"}).json()["objects"]}
    web = {u["id"]: u for u in client.get(WEB_USERS).json()["objects"]}
    assert not (set(active) & set(deactivated)) and not (set(web) & (set(active) | set(deactivated)))
    users = active | deactivated | web
    cases, _ = all_cases(client, {"limit": 5000})
    owners = {c["owner_id"] for c in cases}
    assert owners <= set(users)
    forms = client.get(f"/a/{DOMAIN}/api/v0.5/form/", params={"limit": 1000}).json()["objects"]
    assert all(users[f["metadata"]["userID"]]["username"] == f["metadata"]["username"] for f in forms)
    submitters = {f["metadata"]["userID"] for f in forms}
    for kind in (deactivated, web):  # deactivated workers and web users own cases and submit forms too
        assert owners & set(kind) and submitters & set(kind)


def test_web_users_as_the_web_user_api_lists_them(client):
    body = client.get(WEB_USERS, params={"limit": 2}).json()
    assert body["meta"]["total_count"] == 3 and len(body["objects"]) == 2 and body["meta"]["next"]
    everyone = client.get(WEB_USERS, params={"limit": 100}).json()["objects"]
    fields = {"id", "username", "first_name", "last_name", "default_phone_number", "email", "phone_numbers", "role",
              "is_admin", "permissions", "resource_uri"}
    assert all(set(u) == fields for u in everyone)
    me = next(u for u in everyone if u["username"] == DEMO_USER)  # the API user is a web user of its space
    assert me["is_admin"] and me["role"] == "Admin" and me["id"] == client.get("/api/v0.5/identity/").json()["id"]
    assert all(u["role"] and isinstance(u["permissions"], dict) for u in everyone)
    one = client.get(WEB_USERS, params={"web_username": everyone[1]["username"]}).json()["objects"]
    assert one == [everyone[1]] and client.get(f"{WEB_USERS}{one[0]['id']}/").json() == one[0]
    assert client.get(f"{WEB_USERS}nobody/").status_code == 404


def test_application_list_and_detail(client):
    body = client.get(APPS).json()
    assert body["meta"] == {"limit": None, "next": None, "offset": 0, "previous": None, "total_count": 2}
    apps = body["objects"]
    for app in apps:
        assert {"id", "name", "version", "is_released", "built_on", "build_comment", "built_from_app_id", "versions",
                "modules"} <= set(app)
        assert isinstance(app["version"], int)
        assert client.get(f"{APPS}{app['id']}/").json() == app
    assert client.get(f"{APPS}nope/").status_code == 404
    assert "Références" in apps[1]["name"]


def _leaves(tree: dict, prefix: str = "/data") -> set[str]:
    """Paths of the data fields of a form tree (not attributes, case blocks or meta)."""
    out = set()
    for key, value in tree.items():
        if key.startswith(("@", "#")) or key in ("case", "meta"):
            continue
        path = f"{prefix}/{key}"
        entries = value if isinstance(value, list) else [value]
        for entry in entries:
            if isinstance(entry, dict):
                out.add(path)
                out |= _leaves(entry, path)
            else:
                out.add(path)
    return out


def test_apps_describe_exactly_the_case_types_properties_and_questions(client):
    apps = client.get(APPS).json()["objects"]
    cases, _ = all_cases(client, {"limit": 5000})
    forms = client.get(f"/a/{DOMAIN}/api/v0.5/form/", params={"limit": 1000, "include_archived": "1"}).json()["objects"]
    described: dict[str, set[str]] = {}
    questions: dict[str, set[str]] = {}
    module_type: dict[str, str] = {}
    for app in apps:
        for module in app["modules"]:
            described.setdefault(module["case_type"], set()).update(module["case_properties"])
            for form in module["forms"]:
                questions[form["xmlns"]] = {q["value"] for q in form["questions"]}
                module_type[form["xmlns"]] = module["case_type"]
                assert set(form["name"]) >= {"en"}
    carried: dict[str, set[str]] = {}
    for case in cases:
        carried.setdefault(case["case_type"], set()).update(case["properties"])
    assert carried == described
    for form in forms:
        assert _leaves(form["form"]) <= questions[form["form"]["@xmlns"]], form["form"]["@xmlns"]
        for _, block in find_case_blocks(form["form"]):
            update = block.get("update") or {}
            case_type = next(c["case_type"] for c in cases if c["case_id"] == block["@case_id"])
            assert set(update) <= described[case_type]
    assert {f["form"]["@xmlns"] for f in forms} == set(questions)


def test_discover_labels_every_property_from_a_question(client):
    apps = client.get(APPS).json()["objects"]
    metadata = build_metadata(DOMAIN, apps)
    assert metadata["warnings"] == []
    assert set(metadata["case_types"]) == {"household", "patient", "visit"}
    for case_type, entry in metadata["case_types"].items():
        assert all(prop["label"] for prop in entry["properties"].values()), case_type
    labels = [q["label"] for f in metadata["forms"] for q in f["questions"]]
    assert any(not label.isascii() for label in labels)


def test_state_counts_what_the_apis_list(client):
    state = client.get("/_sim/state").json()["domains"][DOMAIN]
    assert state["cases"] == client.get(f"/a/{DOMAIN}/api/case/v2/").json()["matching_records"]
    forms = client.get(f"/a/{DOMAIN}/api/v0.5/form/", params={"include_archived": "true"}).json()["meta"]["total_count"]
    assert state["forms"] == forms
    assert state["forms"] - state["forms_archived"] == client.get(f"/a/{DOMAIN}/api/v0.5/form/").json()["meta"]["total_count"]
    assert state["users"] == client.get(USERS).json()["meta"]["total_count"]
    assert state["users_archived"] == client.get(USERS, params={"archived": "true"}).json()["meta"]["total_count"]
    assert state["web_users"] == client.get(WEB_USERS).json()["meta"]["total_count"]
    assert state["apps"] == len(client.get(APPS).json()["objects"])
