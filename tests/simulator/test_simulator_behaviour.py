"""CommCare's ways of serving records, each a switch of WireBehaviour, over real HTTP: millisecond order with
microsecond stamps, mixed timestamp spellings, strict Form API dates, quotas, next links on a public base."""

from __future__ import annotations

import base64
import re
from collections import Counter
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from simulator_helpers import CASES, DOMAIN, FORMS, all_cases, api_key, small_config

from data_explorer.loaders.timestamps import format_for_filter
from data_explorer.simulator import OTHER_API_KEY, OTHER_USER, Quota, RunningSimulator, WireBehaviour
from data_explorer.simulator.synth import to_us

CASE_LIST = f"/a/{DOMAIN}/api/case/v2/"
FORM_LIST = f"/a/{DOMAIN}/api/v0.5/form/"
SPELLING = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d+))?(Z|\+00:00)?")


def _us(text: str) -> int:
    """Microseconds since the epoch; a timestamp without a zone is UTC, as CommCare means it."""
    return to_us(datetime.fromisoformat(text))


def _ms(text: str) -> int:
    return _us(text) // 1000


def _serve(behaviour: WireBehaviour, **config) -> RunningSimulator:
    return RunningSimulator(small_config(behaviour=behaviour, **config))


def _client(sim: RunningSimulator, **headers) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, headers=headers or api_key(), timeout=30)


@pytest.fixture(scope="module")
def millisecond_sim():
    with _serve(WireBehaviour(millisecond_order=True)) as running:
        yield running


def _forms_by_date(client: httpx.Client, limit: int) -> tuple[list[dict], list[list[dict]]]:
    """Every form, paging by date as commcare-export does: from the last printed indexed_on, with no offset,
    dropping ids already seen (the server compares the start at millisecond precision)."""
    start, seen, forms, pages = None, set(), [], []
    while True:
        params = {"limit": limit, "order_by": "indexed_on", "include_archived": "true"}
        if start is not None:
            params["indexed_on_start"] = start
        page = client.get(FORM_LIST, params=params).json()["objects"]
        pages.append(page)
        fresh = [f for f in page if f["id"] not in seen]
        forms += fresh
        seen |= {f["id"] for f in page}
        if len(page) < limit or not fresh:
            return forms, pages
        start = format_for_filter(datetime.fromisoformat(page[-1]["indexed_on"]))


def test_cases_order_by_the_millisecond_and_print_microseconds_that_go_back(millisecond_sim):
    with _client(millisecond_sim) as client:
        cases, pages = all_cases(client, {"limit": 7})
    assert len(cases) == len({c["case_id"] for c in cases}) == CASES
    keys = [(_ms(c["indexed_on"]), c["case_id"]) for c in cases]
    assert keys == sorted(keys), "ordered by the millisecond, then by id"
    printed = [_us(c["indexed_on"]) for c in cases]
    assert any(p % 1000 for p in printed), "the stored values have microseconds"
    assert printed != sorted(printed)
    back = [(a, b) for a, b in zip(cases, cases[1:]) if _us(b["indexed_on"]) < _us(a["indexed_on"])]
    assert back and all(_ms(a["indexed_on"]) == _ms(b["indexed_on"]) for a, b in back), "only within a millisecond"
    across = [(p["cases"][-1], q["cases"][0]) for p, q in zip(pages, pages[1:])
              if q["cases"] and _us(q["cases"][0]["indexed_on"]) < _us(p["cases"][-1]["indexed_on"])]
    assert across, "a page can start with a printed value before the one the page before ended with"
    cursor = parse_qs(base64.b64decode(parse_qs(urlsplit(pages[0]["next"]).query)["cursor"][0]).decode())
    assert cursor["indexed_on.gte"] == [pages[0]["cases"][-1]["indexed_on"]], "the cursor carries the stored value"


def test_a_case_filter_compares_at_the_millisecond(millisecond_sim):
    with _client(millisecond_sim) as client:
        cases, _ = all_cases(client, {"limit": 5000})
        later, earlier = next((a, b) for a, b in zip(cases, cases[1:]) if _us(b["indexed_on"]) < _us(a["indexed_on"]))
        found, _ = all_cases(client, {"limit": 5000, "indexed_on.gte": later["indexed_on"]})
        assert earlier["case_id"] in {c["case_id"] for c in found}, "gte the later value still finds the earlier"
        above, _ = all_cases(client, {"limit": 5000, "indexed_on.gt": earlier["indexed_on"]})
        assert not {later["case_id"], earlier["case_id"]} & {c["case_id"] for c in above}


def test_forms_order_by_the_millisecond_and_the_start_filter_compares_at_it(millisecond_sim):
    with _client(millisecond_sim) as client:
        forms = client.get(FORM_LIST, params={"limit": 1000, "order_by": "indexed_on", "include_archived": "1"}).json()
        forms = forms["objects"]
        assert len(forms) == FORMS
        assert [_ms(f["indexed_on"]) for f in forms] == sorted(_ms(f["indexed_on"]) for f in forms)
        back = [(a, b) for a, b in zip(forms, forms[1:]) if _us(b["indexed_on"]) < _us(a["indexed_on"])]
        assert back
        later, earlier = back[0]
        start = format_for_filter(datetime.fromisoformat(later["indexed_on"]))
        page = client.get(FORM_LIST, params={"limit": 5, "order_by": "indexed_on", "include_archived": "1",
                                             "indexed_on_start": start}).json()["objects"]
        assert [f["id"] for f in page[:2]] == [later["id"], earlier["id"]], "the start is truncated to its millisecond"
        paged, pages = _forms_by_date(client, limit=6)
    assert [f["id"] for f in paged] == [f["id"] for f in forms], "paging from the printed value loses nothing"
    assert any(_us(q[0]["indexed_on"]) < _us(p[-1]["indexed_on"]) for p, q in zip(pages, pages[1:]) if q)


def test_the_millisecond_switch_is_off_by_default(sim):
    with _client(sim) as client:
        cases, _ = all_cases(client, {"limit": 5000})
    printed = [_us(c["indexed_on"]) for c in cases]
    assert printed == sorted(printed) and all(p % 1000 == 0 for p in printed)


def test_mixed_spellings_print_the_same_instants(sim):
    with _serve(WireBehaviour(mixed_timestamps=True)) as mixed, _client(mixed) as client, _client(sim) as plain:
        spelled, _ = all_cases(client, {"limit": 9})
        usual, _ = all_cases(plain, {"limit": 5000})
        forms = client.get(FORM_LIST, params={"limit": 1000, "include_archived": "1"}).json()["objects"]
        usual_forms = plain.get(FORM_LIST, params={"limit": 1000, "include_archived": "1"}).json()["objects"]
    assert [c["case_id"] for c in spelled] == [c["case_id"] for c in usual], "the same order, across every cursor"
    kinds = Counter()
    for mine, theirs in zip(spelled + forms, usual + usual_forms):
        for name in ("indexed_on", "date_opened", "last_modified", "server_last_modified", "received_on",
                     "server_modified_on"):
            if name not in mine:
                continue
            match = SPELLING.fullmatch(mine[name])
            assert match, mine[name]
            kinds[(len(match.group(1) or ""), match.group(2))] += 1
            assert _us(mine[name]) == _us(theirs[name]), (name, mine[name], theirs[name])
        assert theirs["indexed_on"].endswith("Z") and len(theirs["indexed_on"]) == 27
    assert set(kinds) == {(digits, zone) for digits in (0, 3, 6) for zone in ("Z", "+00:00", None)}, kinds
    with _serve(WireBehaviour(mixed_timestamps=True, millisecond_order=True)) as both, _client(both) as client:
        cases, _ = all_cases(client, {"limit": 11})
    assert sorted(c["case_id"] for c in cases) == sorted(c["case_id"] for c in usual)
    assert [(_ms(c["indexed_on"]), c["case_id"]) for c in cases] == sorted((_ms(c["indexed_on"]), c["case_id"])
                                                                           for c in cases)


@pytest.fixture(scope="module")
def strict_sim():
    with _serve(WireBehaviour(strict_form_dates=True)) as running:
        yield running


@pytest.mark.parametrize("value", ["2024-05-01", "2024-05-01T10:00:00", "2024-05-01T10:00:00.123456",
                                   "2024-05-01T10:00:00.5", "2024-05-01T10:00Z", ""])
def test_strict_form_dates_accept_commcare_formats(strict_sim, value):
    with _client(strict_sim) as client:
        for name in ("indexed_on_start", "indexed_on_end", "received_on_start", "received_on_end"):
            assert client.get(FORM_LIST, params={name: value}).status_code == 200, (name, value)


@pytest.mark.parametrize("value", ["2024-05-01T00:00:00+00:00", "2024-05-01T10:00:00Z", "2024-05-01T10:00:00.5Z",
                                   "2024-05-01T10:00", "2024-05-01 10:00:00", "yesterday", "<b>"])
def test_strict_form_dates_refuse_others_as_commcare_does(strict_sim, value):
    with _client(strict_sim) as client:
        response = client.get(FORM_LIST, params={"indexed_on_start": value})
    assert response.status_code == 400
    escaped = value.replace("<", "&lt;").replace(">", "&gt;")
    assert response.json() == {"error": f"Bad query parameter: Unknown date format: {escaped}"}


def test_strict_form_dates_take_a_date_as_its_midnight_and_the_loaders_format(strict_sim, sim):
    with _client(strict_sim) as client, _client(sim) as lenient:
        forms = client.get(FORM_LIST, params={"limit": 1000, "order_by": "received_on"}).json()["objects"]
        day = forms[100]["received_on"][:10]
        midnight = f"{day}T00:00:00.000000Z"
        strict = client.get(FORM_LIST, params={"limit": 1000, "received_on_end": day}).json()["objects"]
        assert {f["id"] for f in strict} == {f["id"] for f in forms if f["received_on"] <= midnight}
        whole_day = lenient.get(FORM_LIST, params={"limit": 1000, "received_on_end": day}).json()["objects"]
        assert len(whole_day) > len(strict), "off, a date alone ends at the end of its day"
        since = datetime.fromisoformat(forms[200]["indexed_on"]).astimezone(timezone.utc)
        response = client.get(FORM_LIST, params={"indexed_on_start": format_for_filter(since), "order_by": "indexed_on"})
        assert response.status_code == 200 and response.json()["objects"][0]["indexed_on"] >= forms[200]["indexed_on"][:19]


def _fresh_window(sim: RunningSimulator) -> None:
    """Move the simulator's clock to the start of a quota window, so a test has a whole minute in one."""
    now = sim.call(sim.runtime.auth.now)
    sim.advance_clock(60 - now % 60 + 0.01)


def test_a_domain_quota_answers_429_as_each_api_does():
    with _serve(WireBehaviour(quota=Quota(per_domain_per_minute=3))) as sim, _client(sim) as client:
        _fresh_window(sim)
        assert [client.get(CASE_LIST).status_code for _ in range(3)] == [200, 200, 200]
        refused = client.get(CASE_LIST)
        assert refused.status_code == 429 and refused.content == b""
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        bulk = client.post(f"{CASE_LIST}bulk-fetch/", json={"case_ids": ["x"]})
        assert bulk.status_code == 429 and bulk.content == b"" and "retry-after" in bulk.headers
        bare = client.get(FORM_LIST)
        assert bare.status_code == 429 and bare.content == b"" and "retry-after" not in bare.headers
        assert client.get("/a/empty-space/api/case/v2/").status_code == 200, "another project space has its own"
        sim.advance_clock(int(refused.headers["retry-after"]))
        assert client.get(CASE_LIST).status_code == 200, "the next minute serves again"
        assert sim.stats()["quota_refused"] == 3


def test_a_user_quota_counts_one_user_across_project_spaces():
    with _serve(WireBehaviour(quota=Quota(per_user_per_minute=2))) as sim, _client(sim) as client, \
            _client(sim, Authorization=f"ApiKey {OTHER_USER}:{OTHER_API_KEY}") as other:
        _fresh_window(sim)
        assert client.get(CASE_LIST).status_code == 200
        assert client.get("/a/empty-space/api/v0.5/form/").status_code == 200
        assert client.get("/a/empty-space/api/case/v2/").status_code == 429
        assert other.get("/a/demo-other/api/case/v2/").status_code == 200, "another user has their own"


def test_next_links_are_built_on_the_public_base():
    behaviour = WireBehaviour(public_base_url="http://localhost:{port}")
    with _serve(behaviour) as sim, _client(sim) as client:
        port = sim.port
        body = client.get(CASE_LIST, params={"limit": 50}).json()
        link = urlsplit(body["next"])
        assert f"{link.scheme}://{link.netloc}" == f"http://localhost:{port}" != sim.base_url
        assert link.path == CASE_LIST
        following = client.get(f"{link.path}?{link.query}").json()  # its path and query, on the client's own base
        assert following["matching_records"] == CASES - 50 and following["cases"]
        meta = client.get(FORM_LIST, params={"limit": 5}).json()
        assert meta["meta"]["next"].startswith(FORM_LIST), "v0.5 meta.next stays relative"
        attachment = meta["objects"][0]["attachments"]["form.xml"]["url"]
        assert attachment.startswith(f"http://localhost:{port}/a/{DOMAIN}/")
        sim.set_behaviour(WireBehaviour(public_base_url="https://www.example.org"))
        assert client.get(CASE_LIST).json()["next"].startswith(f"https://www.example.org{CASE_LIST}?cursor=")


def test_behaviour_is_switched_while_serving_and_checked(fresh_sim):
    with _client(fresh_sim) as client:
        assert client.get("/_sim/behaviour").json() == WireBehaviour().to_json()
        wanted = {"millisecond_order": True, "quota": {"per_domain_per_minute": 100}}
        response = client.put("/_sim/behaviour", json=wanted)
        assert response.status_code == 200 and response.json()["millisecond_order"] is True
        assert fresh_sim.behaviour == WireBehaviour(millisecond_order=True, quota=Quota(per_domain_per_minute=100))
        cases, _ = all_cases(client, {"limit": 5000})
        assert any(_us(c["indexed_on"]) % 1000 for c in cases)
        for bad in ({"millisecond_order": "yes"}, {"quota": {"per_domain_per_minute": 0}}, {"fast": True},
                    {"public_base_url": "localhost"}, {"quota": {"per_hour": 5}}):
            assert client.put("/_sim/behaviour", json=bad).status_code == 400, bad
        assert client.get("/_sim/state").json()["behaviour"]["millisecond_order"] is True
        client.post("/_sim/reset")
        assert client.get("/_sim/behaviour").json() == WireBehaviour().to_json()
