"""Case API v2 over HTTP: cursor paging, filters, lookups and refusals as commcare-api.md describes them."""

from __future__ import annotations

import base64
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from simulator_helpers import CASES, DOMAIN, all_cases

LIST = f"/a/{DOMAIN}/api/case/v2/"


def _key(case: dict) -> tuple[datetime, str]:
    return datetime.fromisoformat(case["indexed_on"]), case["case_id"]


def test_cursor_paging_walks_the_whole_space_in_order(client):
    cases, pages = all_cases(client, {"limit": 50})
    assert pages[0]["matching_records"] == CASES == len(cases)
    assert len({c["case_id"] for c in cases}) == CASES
    keys = [_key(c) for c in cases]
    assert keys == sorted(keys)
    assert any(a[0] == b[0] for a, b in zip(keys, keys[1:])), "some cases share one indexed_on"
    assert all("next" in page for page in pages[:-1]) and "next" not in pages[-1]
    assert len(pages[-1]["cases"]) == CASES % 50


def test_next_is_absolute_and_its_cursor_carries_the_parameters(client, sim):
    body = client.get(LIST, params={"limit": 5, "case_type": "patient"}).json()
    link = urlsplit(body["next"])
    assert f"{link.scheme}://{link.netloc}" == sim.base_url and link.path == LIST
    assert list(parse_qs(link.query)) == ["cursor"]
    decoded = parse_qs(base64.b64decode(parse_qs(link.query)["cursor"][0]).decode())
    last = body["cases"][-1]
    assert decoded["limit"] == ["5"] and decoded["case_type"] == ["patient"]
    assert decoded["indexed_on.gte"] == [last["indexed_on"]] and decoded["last_case_id"] == [last["case_id"]]


def test_parameters_beside_a_cursor_are_ignored(client):
    first = client.get(LIST, params={"limit": 5, "case_type": "patient"}).json()
    cursor = parse_qs(urlsplit(first["next"]).query)["cursor"][0]
    following = client.get(LIST, params={"cursor": cursor, "case_type": "household", "limit": 2}).json()
    assert len(following["cases"]) == 5
    assert {c["case_type"] for c in following["cases"]} == {"patient"}


def test_a_last_page_exactly_full_leads_to_one_more_empty_page(client):
    cases, pages = all_cases(client, {"limit": 31})  # 403 = 13 * 31
    assert len(cases) == CASES and len(pages) == 14
    assert pages[-1]["cases"] == [] and "next" not in pages[-1]
    assert pages[-1]["matching_records"] == 0


def test_limit_default_and_bounds(client):
    assert len(client.get(LIST).json()["cases"]) == 20
    assert len(client.get(LIST, params={"limit": 5000}).json()["cases"]) == CASES
    refused = client.get(LIST, params={"limit": 5001})
    assert refused.status_code == 400
    assert refused.json() == {"error": "You cannot request more than 5000 cases per request."}
    for bad in ("abc", "-1", "1.5"):
        response = client.get(LIST, params={"limit": bad})
        assert response.status_code == 400 and response.json() == {"error": f"'{bad}' is not a valid value for 'limit'"}


@pytest.mark.parametrize("param", ["offset", "type", "format", "properties"])
def test_unknown_parameter_is_refused(client, param):
    response = client.get(LIST, params={param: "x"})
    assert response.status_code == 400
    assert response.json() == {"error": f"'{param}' is not a valid parameter."}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"indexed_on.after": "2024-01-01"}, "'after' is not a valid type of date range."),
        ({"last_modified.gte": "yesterday"}, "Cannot parse datetime 'yesterday'"),
        ({"date_opened.lt": "2024-13-01"}, "Cannot parse datetime '2024-13-01'"),
        ({"cursor": "!!!"}, "Invalid cursor."),
    ],
)
def test_bad_values_are_400_not_500(client, params, message):
    response = client.get(LIST, params=params)
    assert response.status_code == 400 and response.json() == {"error": message}


def test_case_objects_have_every_documented_field(client):
    cases, _ = all_cases(client, {"limit": 5000})
    fields = ["domain", "case_id", "case_type", "case_name", "external_id", "owner_id", "date_opened", "last_modified",
              "server_last_modified", "indexed_on", "closed", "date_closed", "properties", "indices"]
    assert all(list(c) == fields for c in cases)
    assert {c["case_type"] for c in cases} == {"household", "patient", "visit"}
    assert all(all(isinstance(v, str) for v in c["properties"].values()) for c in cases)
    closed = [c for c in cases if c["closed"]]
    assert closed and all(c["date_closed"] for c in closed)
    assert all(c["date_closed"] is None for c in cases if not c["closed"])
    text = " ".join(str(c["properties"]) + c["case_name"] for c in cases)
    assert "é" in text and "陈" in text and "😊" in text


def test_indices_point_at_real_cases_of_the_right_type(client):
    cases, _ = all_cases(client, {"limit": 5000})
    by_id = {c["case_id"]: c for c in cases}
    for case in cases:
        if case["case_type"] == "household":
            assert case["indices"] == {}
            continue
        (name, index), = case["indices"].items()
        expected = {"patient": ("parent", "household", "child"), "visit": ("host", "patient", "extension")}
        assert (name, index["case_type"], index["relationship"]) == expected[case["case_type"]]
        assert by_id[index["case_id"]]["case_type"] == index["case_type"]


def _ids(client, **params) -> set[str]:
    cases, pages = all_cases(client, {"limit": 100, **params})
    assert pages[0]["matching_records"] == len(cases)
    return {c["case_id"] for c in cases}


def test_filters_select_what_they_say(client):
    cases, _ = all_cases(client, {"limit": 5000})
    everything = {c["case_id"]: c for c in cases}

    def expect(predicate, **params):
        assert _ids(client, **params) == {i for i, c in everything.items() if predicate(c)}, params

    owner = cases[0]["owner_id"]
    household = next(c for c in cases if c["case_type"] == "household")
    patient = next(c for c in cases if c["case_type"] == "patient")
    middle = sorted(c["indexed_on"] for c in cases)[CASES // 2]
    expect(lambda c: c["case_type"] == "patient", case_type="patient")
    expect(lambda c: c["case_type"] in ("patient", "household"), case_type=["patient", "household"])
    expect(lambda c: c["owner_id"] == owner, owner_id=owner)
    expect(lambda c: c["closed"], closed="true")
    expect(lambda c: not c["closed"], closed="false")
    expect(lambda c: c["case_name"] == patient["case_name"], case_name=patient["case_name"])
    expect(lambda c: c["external_id"] == household["external_id"], external_id=household["external_id"])
    expect(lambda c: c["properties"].get("risk_level") == "high", **{"properties.risk_level": "high"})
    expect(lambda c: c["properties"].get("village") == household["properties"]["village"],
           **{"properties.village": household["properties"]["village"]})
    expect(lambda c: c["indices"].get("parent", {}).get("case_id") == household["case_id"],
           **{"indices.parent": household["case_id"]})
    expect(lambda c: c["indices"].get("host", {}).get("case_id") == patient["case_id"],
           **{"indices.host": patient["case_id"]})
    expect(lambda c: c["indexed_on"] >= middle, **{"indexed_on.gte": middle})
    expect(lambda c: c["indexed_on"] > middle, **{"indexed_on.gt": middle})
    expect(lambda c: c["indexed_on"] < middle, **{"indexed_on.lt": middle})
    expect(lambda c: c["last_modified"][:10] <= "2024-06-30", **{"last_modified.lte": "2024-06-30"})
    expect(lambda c: c["date_opened"][:10] >= "2024-03-01" and c["case_type"] == "visit",
           **{"date_opened.gte": "2024-03-01", "case_type": "visit"})
    expect(lambda c: c["date_closed"] is not None and c["date_closed"] < middle, **{"date_closed.lt": middle})
    expect(lambda c: c["server_last_modified"] < "2024-02-01", **{"server_last_modified.lt": "2024-02-01T00:00:00Z"})
    expect(lambda c: c["case_type"] != "visit", include_deprecated="false")
    expect(lambda c: True, include_deprecated="true")


def test_repeated_date_keys_are_ored(client):
    cases, _ = all_cases(client, {"limit": 5000})
    times = sorted(c["server_last_modified"] for c in cases)
    early, late = times[30], times[-30]
    found = _ids(client, **{"server_last_modified.lt": early, "server_last_modified.gte": late})
    assert found == set()  # different keys: AND
    either = client.get(LIST, params=[("limit", "500"), ("server_last_modified.lt", early),
                                      ("server_last_modified.lt", late)]).json()
    assert either["matching_records"] == sum(1 for t in times if t < late)


def test_filters_page_with_the_cursor_too(client):
    cases, pages = all_cases(client, {"limit": 7, "case_type": "visit", "closed": "false"})
    assert len(pages) > 3
    assert pages[0]["matching_records"] == len(cases) == len({c["case_id"] for c in cases})
    assert all(c["case_type"] == "visit" and not c["closed"] for c in cases)
    assert [p["matching_records"] for p in pages[:3]] == [len(cases), len(cases) - 7, len(cases) - 14]


def test_single_several_and_bulk_lookups(client):
    cases, _ = all_cases(client, {"limit": 5000})
    one = cases[17]
    assert client.get(f"{LIST}{one['case_id']}").json() == one
    missing = "00000000-0000-0000-0000-000000000000"
    several = client.get(f"{LIST}{cases[1]['case_id']},{missing},{cases[2]['case_id']}").json()
    assert several["matching_records"] == 2 and several["missing_records"] == 1
    assert several["cases"] == [cases[1], {"case_id": missing, "error": "not found"}, cases[2]]
    household = next(c for c in cases if c["case_type"] == "household")
    bulk = client.post(f"{LIST}bulk-fetch/", json={"case_ids": [one["case_id"], missing],
                                                  "external_ids": [household["external_id"], "nope"]}).json()
    assert bulk["matching_records"] == 2 and bulk["missing_records"] == 2
    assert bulk["cases"] == [one, {"case_id": missing, "error": "not found"}, household,
                             {"external_id": "nope", "error": "not found"}]
    assert client.post(f"{LIST}bulk-fetch/", content=b"[1, 2").status_code == 400
    assert client.post(f"{LIST}bulk-fetch/", json={"case_ids": "x"}).status_code == 400


def test_missing_and_foreign_cases(client, sim):
    response = client.get(f"{LIST}not-a-case")
    assert response.status_code == 404 and response.json() == {"error": "Case 'not-a-case' not found"}
    other = sim.runtime.dataset.spaces["demo-other"].cases.case_id(3)
    response = client.get(f"{LIST}{other}")
    assert response.status_code == 403
    assert response.json() == {"error": f"Insufficient permission for Case '{other}'"}


def test_an_empty_space_has_one_empty_page(client):
    body = client.get("/a/empty-space/api/case/v2/").json()
    assert body == {"matching_records": 0, "cases": []}
