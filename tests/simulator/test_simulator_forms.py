"""Form API v0.5 over HTTP: tastypie paging, ordering, date filters, and the case blocks in form trees."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from simulator_helpers import CASES, DOMAIN, FORMS, all_cases

from data_explorer.loaders.commcare.forms import find_case_blocks

LIST = f"/a/{DOMAIN}/api/v0.5/form/"
ARCHIVED = FORMS // 53


def all_forms(client, **params) -> tuple[list[dict], list[dict]]:
    path, query = LIST, {"limit": 40, **params}
    forms, metas = [], []
    while True:
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        metas.append(body["meta"])
        forms += body["objects"]
        link = body["meta"]["next"]
        if not link:
            return forms, metas
        assert not link.startswith("http") and link.startswith(path)
        path, query = urlsplit(link).path, dict(parse_qsl(urlsplit(link).query))


@pytest.fixture(scope="module")
def forms(sim):
    import httpx
    from simulator_helpers import api_key

    with httpx.Client(base_url=sim.base_url, headers=api_key(), timeout=30) as c:
        return all_forms(c, order_by="indexed_on")[0]


def test_offset_paging_with_a_relative_next(client):
    forms, metas = all_forms(client)
    assert metas[0] == {"limit": 40, "next": f"{LIST}?limit=40&offset=40", "offset": 0, "previous": None,
                        "total_count": FORMS - ARCHIVED}
    assert len(forms) == FORMS - ARCHIVED == len({f["id"] for f in forms})
    assert metas[1]["previous"] == f"{LIST}?limit=40&offset=0"
    assert metas[-1]["next"] is None


def test_next_keeps_the_other_parameters(client):
    meta = client.get(LIST, params={"limit": 3, "order_by": "indexed_on", "xmlns": "x"}).json()["meta"]
    assert meta["total_count"] == 0 and meta["next"] is None
    meta = client.get(LIST, params={"order_by": "indexed_on", "limit": 3}).json()["meta"]
    assert meta["next"] == f"{LIST}?order_by=indexed_on&limit=3&offset=3"


def test_limit_defaults_to_20_and_is_capped_at_1000(client):
    assert len(client.get(LIST).json()["objects"]) == 20
    meta = client.get(LIST, params={"limit": 5000}).json()["meta"]
    assert meta["limit"] == 1000
    for params in ({"limit": "x"}, {"limit": -1}, {"offset": "y"}, {"offset": -5}):
        assert client.get(LIST, params=params).status_code == 400


def test_the_alias_serves_the_same(client):
    assert client.get(f"/a/{DOMAIN}/api/form/v1/", params={"limit": 5}).json()["objects"] == \
        client.get(LIST, params={"limit": 5}).json()["objects"]


@pytest.mark.parametrize("field", ["indexed_on", "server_modified_on", "received_on"])
def test_order_by(client, field):
    ascending, _ = all_forms(client, order_by=field, limit=100)
    descending, _ = all_forms(client, order_by=f"-{field}", limit=100)
    values = [f[field] for f in ascending]
    assert values == sorted(values)
    assert [f["id"] for f in descending] == [f["id"] for f in reversed(ascending)]
    default, _ = all_forms(client, limit=100)
    assert [f["id"] for f in default] == [f["id"] for f in reversed(all_forms(client, order_by="received_on", limit=100)[0])]
    assert client.get(LIST, params={"order_by": "form.name"}).status_code == 400


def test_date_filters_are_inclusive(client, forms):
    instants = [f["indexed_on"] for f in forms]
    start, end = instants[50], instants[120]
    found, _ = all_forms(client, order_by="indexed_on", indexed_on_start=start[:-1], indexed_on_end=end.rstrip("Z"))
    assert [f["indexed_on"] for f in found] == [t for t in instants if start <= t <= end]
    day = forms[200]["received_on"][:10]
    found, _ = all_forms(client, received_on_start=day, received_on_end=day)
    assert found and {f["received_on"][:10] for f in found} == {day}
    assert len(found) == sum(1 for f in forms if f["received_on"][:10] == day)
    minute, _ = all_forms(client, received_on_start=f"{day}T00:00Z")
    assert len(minute) == sum(1 for f in forms if f["received_on"][:10] >= day)


@pytest.mark.parametrize("value", ["2024-05-01T00:00:00+00:00", "2024-05-01T10:00:00+02:00", "01/05/2024", "2024-5-1",
                                   "2024-02-30", "yesterday"])
def test_bad_dates_are_refused(client, value):
    response = client.get(LIST, params={"indexed_on_start": value})
    assert response.status_code == 400 and "indexed_on_start" in response.json()["error"]


def test_filters(client, sim, forms):
    kinds = {f["form"]["@xmlns"] for f in forms}
    assert len(kinds) == 7
    xmlns = sorted(kinds)[0]
    found, _ = all_forms(client, xmlns=xmlns, order_by="indexed_on")
    assert [f["id"] for f in found] == [f["id"] for f in forms if f["form"]["@xmlns"] == xmlns]
    app_id = forms[0]["app_id"]
    found, _ = all_forms(client, app_id=app_id, order_by="indexed_on")
    assert [f["id"] for f in found] == [f["id"] for f in forms if f["app_id"] == app_id]
    case_id = next(iter(find_case_blocks(forms[3]["form"])))[1]["@case_id"]
    found, _ = all_forms(client, case_id=case_id, order_by="indexed_on")
    expected = [f["id"] for f in forms if any(b["@case_id"] == case_id for _, b in find_case_blocks(f["form"]))]
    assert [f["id"] for f in found] == expected and expected


def test_archived_forms_only_on_request(client, forms):
    assert not any(f["archived"] for f in forms)
    with_archived, metas = all_forms(client, include_archived="true", limit=100)
    assert metas[0]["total_count"] == FORMS == len(with_archived)
    assert sum(f["archived"] for f in with_archived) == ARCHIVED


def test_form_objects_have_the_documented_fields(forms):
    for name in ("id", "domain", "app_id", "build_id", "type", "version", "uiversion", "archived", "problem",
                 "received_on", "server_modified_on", "indexed_on", "edited_on", "metadata", "attachments",
                 "resource_uri", "form"):
        assert all(name in f for f in forms), name
    meta = forms[0]["metadata"]
    assert {"appVersion", "deviceID", "instanceID", "timeStart", "timeEnd", "userID", "username"} <= set(meta)
    assert forms[0]["form"]["meta"]["instanceID"] == forms[0]["id"]
    assert forms[0]["attachments"]["form.xml"]["content_type"] == "text/xml"


def test_case_blocks_refer_to_real_cases_and_take_every_shape(client, forms):
    cases = {c["case_id"]: c for c in all_cases(client, {"limit": 5000})[0]}
    assert len(cases) == CASES
    paths, per_form = set(), []
    shapes = {"list repeat": 0, "single repeat": 0, "empty index": 0, "extension": 0, "close": 0, "create": 0}
    for form in forms:
        blocks = list(find_case_blocks(form["form"]))
        per_form.append(len(blocks))
        for path, block in blocks:
            paths.add(path.split("[")[0])
            case = cases[block["@case_id"]]
            if "create" in block:
                shapes["create"] += 1
                assert block["create"]["case_type"] == case["case_type"]
                assert block["create"]["case_name"] == case["case_name"]
            index = block.get("index")
            if index == "":
                shapes["empty index"] += 1
            elif index:
                (name, ref), = index.items()
                assert cases[ref["#text"]]["case_type"] == ref["@case_type"]
                assert case["indices"][name]["case_id"] == ref["#text"]
                shapes["extension"] += ref.get("@relationship") == "extension"
            shapes["close"] += "close" in block
        tree = form["form"]
        for repeat in ("members", "member_updates"):
            if isinstance(tree.get(repeat), list):
                shapes["list repeat"] += 1
            elif isinstance(tree.get(repeat), dict):
                shapes["single repeat"] += 1
    assert all(shapes.values()), shapes
    assert min(per_form) >= 1 and max(per_form) >= 3
    assert {"form.case", "form.members.case", "form.visit_details.case", "form.referral.household_check.case"} <= paths


def test_single_form_and_missing_ones(client, forms):
    one = forms[7]
    assert client.get(f"{LIST}{one['id']}/").json() == one
    response = client.get(f"{LIST}no-such-form/")
    assert response.status_code == 404 and response.content == b""


def test_paging_by_date_as_the_loader_does_gets_every_form_once(fresh_sim):
    import httpx
    from simulator_helpers import api_key

    with httpx.Client(base_url=fresh_sim.base_url, headers=api_key(), timeout=30) as client:
        start, offset, seen, pages = None, 0, [], 0
        while True:
            params = {"limit": 25, "order_by": "indexed_on", "offset": offset, "include_archived": "true"}
            if start:
                params["indexed_on_start"] = start
            objects = client.get(LIST, params=params).json()["objects"]
            pages += 1
            seen += [f for f in objects if f["id"] not in {s["id"] for s in seen[-25:]}]
            if len(objects) < 25:
                break
            last = objects[-1]["indexed_on"].rstrip("Z")
            offset, start = (offset + 25, start) if start == last == objects[0]["indexed_on"].rstrip("Z") else (0, last)
    assert len(seen) == FORMS == len({f["id"] for f in seen})
    assert fresh_sim.stats()["prefetched"] >= pages - 2  # the next page was rendered ahead
