"""Change over time beyond updates, over real HTTP: deletions, archives and unarchives, and changes indexed late
(earlier stamps, seen only after some further list requests); each made from a test between two reads."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest
from simulator_helpers import CASES, DOMAIN, FORMS, all_cases, api_key, small_config

from data_explorer.simulator import RunningSimulator

CASE_LIST = f"/a/{DOMAIN}/api/case/v2/"
FORM_LIST = f"/a/{DOMAIN}/api/v0.5/form/"
ARCHIVED = FORMS // 53
HOUR = 3600


def _client(sim) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, headers=api_key(), timeout=30)


def _forms(client: httpx.Client, **params) -> tuple[list[dict], int]:
    body = client.get(FORM_LIST, params={"limit": 1000, "order_by": "indexed_on", **params}).json()
    return body["objects"], body["meta"]["total_count"]


def _key(record: dict) -> tuple[datetime, str]:
    return datetime.fromisoformat(record["indexed_on"]), record.get("case_id") or record["id"]


def test_deleted_cases_leave_the_lists_and_lookups(fresh_sim):
    with _client(fresh_sim) as client:
        before, _ = all_cases(client, {"limit": 100})
        named = before[10]["case_id"]
        change = fresh_sim.mutate(DOMAIN, delete_case_ids=[named], delete_cases=3)
        gone = change["deleted_case_ids"]
        assert gone[0] == named and len(set(gone)) == 4
        after, pages = all_cases(client, {"limit": 100})
        assert pages[0]["matching_records"] == CASES - 4
        assert [c["case_id"] for c in after] == [c["case_id"] for c in before if c["case_id"] not in gone]
        response = client.get(f"{CASE_LIST}{named}")
        assert response.status_code == 404 and response.json() == {"error": f"Case '{named}' not found"}
        live = before[0]["case_id"]
        bulk = client.post(f"{CASE_LIST}bulk-fetch/", json={"case_ids": [gone[1], live, named]}).json()
        assert bulk["matching_records"] == 1 and bulk["missing_records"] == 2
        assert bulk["cases"] == [{"case_id": gone[1], "error": "not found"}, before[0],
                                 {"case_id": named, "error": "not found"}]
        several = client.get(f"{CASE_LIST}{live},{gone[2]}").json()
        assert several["missing_records"] == 1
        counts = client.get("/_sim/state").json()["domains"][DOMAIN]
        assert counts["cases"] == CASES - 4 and counts["cases_deleted"] == 4
        later = fresh_sim.mutate(DOMAIN, update_cases=50, new_forms=5)
        assert not set(later["updated_case_ids"]) & set(gone), "a deleted case is not changed again"


def test_deleted_forms_leave_the_lists_and_a_lookup_is_404(fresh_sim):
    with _client(fresh_sim) as client:
        before, total = _forms(client, include_archived="true")
        assert total == FORMS
        archived = next(f["id"] for f in before if f["archived"])
        change = fresh_sim.mutate(DOMAIN, delete_form_ids=[before[3]["id"], archived], delete_forms=2)
        gone = set(change["deleted_form_ids"])
        assert len(gone) == 4
        after, total = _forms(client, include_archived="true")
        assert total == FORMS - 4 == len(after)
        assert [f["id"] for f in after] == [f["id"] for f in before if f["id"] not in gone]
        _, unarchived = _forms(client)
        assert unarchived == sum(1 for f in after if not f["archived"])
        response = client.get(f"{FORM_LIST}{archived}/")
        assert response.status_code == 404 and response.content == b""
        assert client.get(f"{FORM_LIST}{after[0]['id']}/").json() == after[0]


def test_counting_forms_by_window_finds_where_deleted_ones_were(fresh_sim):
    """CommCare's Form API has no lookup of many ids: a client that wants to know which forms it still has can
    compare counts per indexed_on window (meta.total_count, limit 1) and read again only the windows that differ."""
    with _client(fresh_sim) as client:
        forms, _ = _forms(client, include_archived="true")
        edges = [forms[k]["indexed_on"][:23] for k in (0, 100, 200, 300)] + ["2030-01-01T00:00:00"]
        windows = list(zip(edges, edges[1:]))

        def counts() -> list[int]:
            return [client.get(FORM_LIST, params={"limit": 1, "include_archived": "1", "indexed_on_start": start,
                                                  "indexed_on_end": end}).json()["meta"]["total_count"]
                    for start, end in windows]

        before = counts()
        fresh_sim.mutate(DOMAIN, delete_form_ids=[forms[150]["id"]])
        after = counts()
    assert [b - a for a, b in zip(after, before)] == [0, 1, 0, 0]


def test_archived_forms_come_only_on_request_and_unarchived_ones_come_back(fresh_sim):
    with _client(fresh_sim) as client:
        before, _ = _forms(client, include_archived="true")
        target = next(f for f in before if not f["archived"])
        archived = fresh_sim.mutate(DOMAIN, archive_form_ids=[target["id"]])
        assert archived["archived_form_ids"] == [target["id"]]
        plain, total = _forms(client)
        assert target["id"] not in {f["id"] for f in plain} and total == FORMS - ARCHIVED - 1
        everything, _ = _forms(client, include_archived="true")
        entry = next(f for f in everything if f["id"] == target["id"])
        assert entry["archived"] is True and everything[-1]["id"] == target["id"], "archiving indexes it again"
        assert _key(entry) > _key(before[-1]) and entry["received_on"] == target["received_on"]
        assert client.get(f"{FORM_LIST}{target['id']}/").json() == entry
        fresh_sim.mutate(DOMAIN, unarchive_form_ids=[target["id"]])
        plain, total = _forms(client)
        assert total == FORMS - ARCHIVED and plain[-1]["id"] == target["id"] and plain[-1]["archived"] is False
        by_count = fresh_sim.mutate(DOMAIN, archive_forms=3, unarchive_forms=2)
        assert len(by_count["archived_form_ids"]) == 3 and len(by_count["unarchived_form_ids"]) == 2
        _, total = _forms(client)
        assert total == FORMS - ARCHIVED - 1
        state = client.get("/_sim/state").json()["domains"][DOMAIN]
        assert state["forms"] == FORMS and state["forms_archived"] == ARCHIVED + 1


def test_a_case_change_indexed_late_appears_later_under_an_earlier_stamp(fresh_sim):
    with _client(fresh_sim) as client:
        fresh_sim.mutate(DOMAIN, update_cases=5)
        served, _ = all_cases(client, {"limit": 5000})
        checkpoint = served[-1]["indexed_on"]
        late = fresh_sim.mutate(DOMAIN, update_cases=3, new_cases=2, late_by=HOUR + 0.5, visible_after=2)
        assert late["visible"] is False
        touched = late["updated_case_ids"] + late["new_case_ids"]
        for _ in range(2):  # two more list requests do not see it yet
            unseen, _ = all_cases(client, {"limit": 5000})
            assert [c["case_id"] for c in unseen] == [c["case_id"] for c in served]
        assert client.get(f"{CASE_LIST}{late['new_case_ids'][0]}").status_code == 404
        seen, pages = all_cases(client, {"limit": 5000})
        assert pages[0]["matching_records"] == CASES + 2
        by_id = {c["case_id"]: c for c in seen}
        assert all(by_id[i]["indexed_on"] < checkpoint for i in touched), "stamped before records already served"
        assert [_key(c) for c in seen] == sorted(_key(c) for c in seen)
        assert [c["case_id"] for c in seen[-5:]] == [c["case_id"] for c in served[-5:]], "they sort before these"
        missed, _ = all_cases(client, {"limit": 5000, "indexed_on.gt": checkpoint})
        assert missed == [], "reading only after the last stamp served misses them"
        behind, _ = all_cases(client, {"limit": 5000, "indexed_on.gte": late["changed_from"][:19]})
        assert set(touched) <= {c["case_id"] for c in behind}, "a look-back window finds them"


def test_late_changes_can_tie_with_records_already_served(fresh_sim):
    with _client(fresh_sim) as client:
        first = fresh_sim.mutate(DOMAIN, update_cases=6)
        all_cases(client, {"limit": 5000})  # served before the late change comes
        second = fresh_sim.mutate(DOMAIN, update_cases=6, late_by=HOUR)  # at the first mutation's instants
        seen, _ = all_cases(client, {"limit": 4})
    assert len(seen) == CASES and [_key(c) for c in seen] == sorted(_key(c) for c in seen)
    by_id = {c["case_id"]: c for c in seen}
    pairs = [(a, b) for a, b in zip(first["updated_case_ids"], second["updated_case_ids"])
             if a not in second["updated_case_ids"] and b not in first["updated_case_ids"]]
    assert pairs
    for served_id, late_id in pairs:
        assert by_id[served_id]["indexed_on"] == by_id[late_id]["indexed_on"], "a late record ties a served one"
        order = [c["case_id"] for c in seen]
        assert (order.index(served_id) < order.index(late_id)) == (served_id < late_id), "ties go by id"


def test_forms_indexed_late_sort_before_forms_already_served(fresh_sim):
    with _client(fresh_sim) as client:
        fresh_sim.mutate(DOMAIN, new_forms=4)
        served, _ = _forms(client, include_archived="true")
        late = fresh_sim.mutate(DOMAIN, new_forms=3, late_by=HOUR + 1)
        seen, total = _forms(client, include_archived="true")
        assert total == FORMS + 7
        ids = [f["id"] for f in seen]
        assert ids[-4:] == [f["id"] for f in served[-4:]] and ids[-7:-4] == late["new_form_ids"]
        assert all(f["indexed_on"] < served[-1]["indexed_on"] for f in seen[-7:-4])
        by_received = client.get(FORM_LIST, params={"limit": 1000, "order_by": "received_on",
                                                    "include_archived": "1"}).json()["objects"]
        assert [f["received_on"] for f in by_received] == sorted(f["received_on"] for f in by_received)
        start = late["changed_from"][:19]
        window, _ = _forms(client, include_archived="true", indexed_on_start=start)
        assert [f["id"] for f in window][:3] == late["new_form_ids"]


def test_a_mutation_waiting_to_be_seen_is_shown_before_the_next(fresh_sim):
    with _client(fresh_sim) as client:
        waiting = fresh_sim.mutate(DOMAIN, new_cases=2, late_by=60, visible_after=100)
        assert client.get("/_sim/state").json()["domains"][DOMAIN]["pending_changes"] == 1
        assert client.get(CASE_LIST, params={"limit": 1}).json()["matching_records"] == CASES
        following = fresh_sim.mutate(DOMAIN, new_cases=1)
        cases, _ = all_cases(client, {"limit": 5000})
    assert len(cases) == CASES + 3
    assert [c["case_id"] for c in cases[-3:]] == waiting["new_case_ids"] + following["new_case_ids"]


def test_changes_are_deterministic_and_reset_undoes_them():
    steps = [dict(update_cases=7, delete_cases=3, new_forms=4), dict(archive_forms=2, delete_forms=2, unarchive_forms=1),
             dict(new_cases=3, update_cases=2, new_forms=2, late_by=HOUR + 2.5, visible_after=1)]
    paths = [(CASE_LIST, {"limit": 5000}), (FORM_LIST, {"limit": 1000, "include_archived": "1"})]

    def run(sim: RunningSimulator) -> list:
        out = []
        with _client(sim) as client:
            for step in steps:
                out.append(sim.mutate(DOMAIN, **step))
                out += [client.get(p, params=q).content.replace(sim.base_url.encode(), b"") for p, q in paths]
            out += [client.get(p, params=q).content.replace(sim.base_url.encode(), b"") for p, q in paths]
        return out

    with RunningSimulator(small_config()) as one, RunningSimulator(small_config()) as two:
        first = run(one)
        assert first == run(two)
        one.reset()
        with _client(one) as client:
            assert client.get(CASE_LIST, params={"limit": 1}).json()["matching_records"] == CASES
            assert client.get(FORM_LIST, params={"include_archived": "1"}).json()["meta"]["total_count"] == FORMS
        assert run(one) == first


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"delete_case_ids": ["00000000-0000-0000-0000-000000000000"]}, 400, "no live case"),
    ({"archive_form_ids": ["nope"]}, 400, "no live form"),
    ({"late_by": 10 * 24 * HOUR}, 400, "reaches back into the base data"),
    ({"late_by": -1}, 400, "late_by"),
    ({"visible_after": -2}, 400, "visible_after"),
    ({"delete_case_ids": "abc"}, 400, "list of ids"),
    ({"delete_forms": True}, 400, "delete_forms"),
])
def test_bad_changes_are_refused_with_a_reason(fresh_sim, body, status, says):
    with _client(fresh_sim) as client:
        response = client.post("/_sim/mutate", json={"domain": DOMAIN, **body})
        assert response.status_code == status and says in response.json()["error"]
        assert client.get("/_sim/state").json()["data_version"] == 0


def test_naming_a_form_in_the_wrong_state_is_refused(fresh_sim):
    with _client(fresh_sim) as client:
        forms, _ = _forms(client, include_archived="true")
        archived = next(f["id"] for f in forms if f["archived"])
        for body in ({"archive_form_ids": [archived]}, {"unarchive_form_ids": [forms[0]["id"]]},
                     {"delete_form_ids": [forms[0]["id"]], "archive_form_ids": [forms[0]["id"]]}):
            response = client.post("/_sim/mutate", json={"domain": DOMAIN, **body})
            assert response.status_code == 400, body
        case = client.get(CASE_LIST, params={"limit": 1}).json()["cases"][0]["case_id"]
        response = client.post("/_sim/mutate", json={"domain": DOMAIN, "update_case_ids": [case],
                                                     "delete_case_ids": [case]})
        assert response.status_code == 400 and "named twice" in response.json()["error"]
