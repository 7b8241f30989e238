"""Change over time: updated cases move to the end, new ones appear, forms record it; all deterministic."""

from __future__ import annotations

from datetime import datetime

import httpx
from simulator_helpers import CASES, DOMAIN, FORMS, all_cases, api_key

from data_explorer.loaders.commcare.forms import find_case_blocks

LIST = f"/a/{DOMAIN}/api/case/v2/"


def _client(sim) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, headers=api_key(), timeout=30)


def test_updated_cases_reappear_at_the_end_with_later_times(fresh_sim):
    with _client(fresh_sim) as client:
        before, _ = all_cases(client, {"limit": 100})
        last_instant = max(c["indexed_on"] for c in before)
        change = fresh_sim.mutate(DOMAIN, update_cases=25, new_cases=9)
        assert change["version"] == 1 and len(change["updated_case_ids"]) == 25 and len(change["new_case_ids"]) == 9
        after, pages = all_cases(client, {"limit": 100})
    assert pages[0]["matching_records"] == len(after) == CASES + 9
    assert len({c["case_id"] for c in after}) == CASES + 9
    touched = change["updated_case_ids"] + change["new_case_ids"]
    assert [c["case_id"] for c in after[-34:]] == touched
    old = {c["case_id"]: c for c in before}
    for case in after[-34:]:
        assert case["indexed_on"] > last_instant and case["server_last_modified"] > last_instant
    for case_id in change["updated_case_ids"]:
        new = next(c for c in after if c["case_id"] == case_id)
        assert new["properties"] != old[case_id]["properties"]
        assert new["date_opened"] == old[case_id]["date_opened"] and new["case_name"] == old[case_id]["case_name"]
    assert [c for c in after[:-34]] == [c for c in before if c["case_id"] not in set(touched)]
    by_id = {c["case_id"]: c for c in after}
    for case_id in change["new_case_ids"]:
        for index in by_id[case_id]["indices"].values():
            assert index["case_id"] in by_id


def test_exactly_the_changes_are_visible_after_a_checkpoint(fresh_sim):
    with _client(fresh_sim) as client:
        before, _ = all_cases(client, {"limit": 5000})
        checkpoint = before[-1]["indexed_on"]
        fresh_sim.mutate(DOMAIN, update_cases=12, new_cases=3)
        changed, pages = all_cases(client, {"limit": 4, "indexed_on.gt": checkpoint})
        assert pages[0]["matching_records"] == 15 == len(changed)
        inclusive, _ = all_cases(client, {"limit": 5000, "indexed_on.gte": checkpoint})
        assert len(inclusive) == 16 and inclusive[0]["case_id"] == before[-1]["case_id"]
        second = fresh_sim.mutate(DOMAIN, update_cases=5)
        again, _ = all_cases(client, {"limit": 5000, "indexed_on.gt": changed[-1]["indexed_on"]})
        assert [c["case_id"] for c in again] == second["updated_case_ids"]


def test_a_case_updated_twice_appears_once(fresh_sim):
    with _client(fresh_sim) as client:
        for _ in range(4):
            fresh_sim.mutate(DOMAIN, update_cases=150)
        cases, _ = all_cases(client, {"limit": 5000})
        assert len(cases) == len({c["case_id"] for c in cases}) == CASES
        keys = [(datetime.fromisoformat(c["indexed_on"]), c["case_id"]) for c in cases]
        assert keys == sorted(keys)
        assert client.get(f"{LIST}{cases[-1]['case_id']}").json() == cases[-1]


def test_new_forms_create_and_update_the_changed_cases(fresh_sim):
    with _client(fresh_sim) as client:
        last = client.get(f"/a/{DOMAIN}/api/v0.5/form/", params={"limit": 1}).json()["objects"][0]
        change = fresh_sim.mutate(DOMAIN, update_cases=4, new_cases=6, new_forms=10)
        assert len(change["new_form_ids"]) == 10
        body = client.get(f"/a/{DOMAIN}/api/v0.5/form/",
                          params={"order_by": "indexed_on", "indexed_on_start": last["indexed_on"][:-1],
                                  "limit": 100}).json()
        forms = [f for f in body["objects"] if f["id"] != last["id"]]
        assert [f["id"] for f in forms] == change["new_form_ids"]
        assert body["meta"]["total_count"] == 11
        cases = {c["case_id"]: c for c in all_cases(client, {"limit": 5000})[0]}
        created, mentioned = set(), set()
        for form in forms:
            assert form["received_on"] > last["received_on"]
            for _, block in find_case_blocks(form["form"]):
                assert block["@case_id"] in cases
                mentioned.add(block["@case_id"])
                if "create" in block:
                    created.add(block["@case_id"])
        assert created == set(change["new_case_ids"])
        assert set(change["updated_case_ids"]) <= mentioned
        state = client.get("/_sim/state").json()
        counts = state["domains"][DOMAIN]
        assert counts["forms"] == FORMS + 10 and counts["forms_archived"] == FORMS // 53
        assert counts["cases"] == CASES + 6 and counts["cases_updated"] == 4


def test_mutations_are_deterministic_and_reset_undoes_them(fresh_sim):
    with _client(fresh_sim) as client:
        first = client.post("/_sim/mutate", json={"domain": DOMAIN, "update_cases": 7, "new_cases": 2, "new_forms": 3})
        assert first.status_code == 200
        snapshot = client.get(LIST, params={"limit": 5000}).content
        client.post("/_sim/reset")
        assert client.get("/_sim/state").json()["domains"][DOMAIN]["version"] == 0
        assert client.get(LIST, params={"limit": 5000}).json()["matching_records"] == CASES
        second = client.post("/_sim/mutate", json={"domain": DOMAIN, "update_cases": 7, "new_cases": 2, "new_forms": 3})
        assert second.json() == first.json()
        assert client.get(LIST, params={"limit": 5000}).content == snapshot


def test_bad_mutations_are_refused(fresh_sim):
    with _client(fresh_sim) as client:
        assert client.post("/_sim/mutate", json={"domain": "nowhere", "update_cases": 1}).status_code == 404
        assert client.post("/_sim/mutate", json={"domain": DOMAIN, "update_cases": -1}).status_code == 400
        assert client.post("/_sim/mutate", json={"domain": DOMAIN, "new_cases": "3"}).status_code == 400
        assert client.post("/_sim/mutate", json={"domain": DOMAIN, "delete": 3}).status_code == 400
        assert client.post("/_sim/mutate", content=b"not json").status_code == 400
        assert client.get("/_sim/state").json()["data_version"] == 0


def test_changes_during_a_pull_show_up_again_near_the_end(fresh_sim):
    with _client(fresh_sim) as client:
        body = client.get(LIST, params={"limit": 50}).json()
        seen = list(body["cases"])
        body = client.get(body["next"]).json()  # the page after this one is being prefetched now
        seen += body["cases"]
        change = fresh_sim.mutate(DOMAIN, update_cases=30)
        while True:
            body = client.get(body["next"]).json()
            seen += body["cases"]
            if "next" not in body:
                break
        fresh, _ = all_cases(client, {"limit": 5000})
    latest = {c["case_id"]: c for c in seen}  # the last time a case was seen
    assert latest == {c["case_id"]: c for c in fresh}
    assert [c["case_id"] for c in seen[-30:]] == change["updated_case_ids"]
    assert len(seen) == CASES + sum(1 for c in seen[:100] if c["case_id"] in set(change["updated_case_ids"]))
