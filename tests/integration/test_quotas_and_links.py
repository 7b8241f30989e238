"""CommCare's quotas and links, against the simulator over real HTTP: a 429 waits as long as CommCare
says (or its share of a minute), the run says that it waits, a stop cuts the wait short; a ``next``
link naming another host is followed on COMMCARE_BASE_URL and nothing reaches that host; a 403 names
the permissions that are missing."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from data_explorer.loaders.commcare.client import CommCareClient
from data_explorer.loaders.commcare.credentials import credential_from_settings
from data_explorer.loaders.errors import Cancelled
from data_explorer.pipelines.runner import RunRequest, materialize
from data_explorer.simulator import OTHER_API_KEY, OTHER_USER

RATE_LIMIT = "CommCare's rate limit for this project space"


class Messages:
    """A reporter that keeps every progress message the run reported."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def report(self, status, *, important=False):
        self.seen.append(status.progress["message"])

    def close(self):
        pass


def test_a_retry_after_beyond_the_backoff_cap_is_waited_out_and_the_run_says_so(space_factory, conn):
    space = space_factory(cases=300)
    space.sim.set_faults({"rules": [{"kind": "rate_limit", "rate": 0.4, "scope": "cases"}], "seed": 3, "retry_after": 1})
    messages = Messages()
    started = time.monotonic()
    settings = space.settings(COMMCARE_CASE_PAGE_SIZE=60, COMMCARE_MAX_RETRIES=20)  # COMMCARE_MAX_BACKOFF is 0.05 here
    status = materialize(settings, space.db, RunRequest(space.domain), extra_reporters=(messages,))
    elapsed = time.monotonic() - started
    assert status.phase == "Succeeded", status.error
    assert space.count(conn, "cases") == space.expected()["cases"]
    fired = space.sim.stats()["faults"]["rate_limit"]
    assert fired >= 2, "the fault hardly fired: the test proves little"
    assert elapsed >= fired * 1.0, (elapsed, fired)  # each 429 waited its whole announced second
    waits = [m for m in messages.seen if m.startswith("waiting ")]
    assert f"waiting 1 s: {RATE_LIMIT} (Case API v2, retry 1 of 20)" in waits, messages.seen
    assert len(waits) >= fired


def test_a_retry_after_beyond_the_setting_fails_at_once_naming_it(space_factory):
    space = space_factory(cases=20)
    space.sim.set_faults({"rules": [{"kind": "rate_limit", "rate": 1.0, "scope": "apps"}], "retry_after": 120})
    started = time.monotonic()
    status = space.run(COMMCARE_MAX_RETRY_AFTER=60, COMMCARE_MAX_RETRIES=8)
    assert time.monotonic() - started < 10
    assert status.phase == "Failed" and status.error["code"] == "RETRIES_EXHAUSTED"
    message = status.error["message"]
    assert "asks to wait 120 s" in message and "COMMCARE_MAX_RETRY_AFTER (60 s)" in message, message
    assert space.sim.stats()["requests"]["apps"] == {"429": 1}


def test_a_bare_429_waits_its_share_of_a_minute(space_factory):
    space = space_factory(cases=20)
    space.sim.set_faults({"rules": [{"kind": "rate_limit_bare", "rate": 1.0, "scope": "apps"}]})
    started = time.monotonic()
    status = space.run(COMMCARE_MAX_RETRIES=3, COMMCARE_MAX_BACKOFF=2)
    elapsed = time.monotonic() - started
    assert status.phase == "Failed" and status.error["code"] == "RETRIES_EXHAUSTED"
    assert space.sim.stats()["requests"]["apps"] == {"429": 4}
    # a minute's share is 20 s a retry, bounded by COMMCARE_MAX_BACKOFF: three waits of 2 s, where plain
    # exponential backoff (0.5-1, 1-2, 2 s) would have given up within 5
    assert elapsed >= 6.0, elapsed


def test_a_stop_request_ends_a_long_wait_at_once(space_factory):
    space = space_factory(cases=20)
    space.sim.set_faults({"rules": [{"kind": "rate_limit", "rate": 1.0, "scope": "apps"}], "retry_after": 30})
    cc = space.settings().require_commcare()
    stop, said, outcome = threading.Event(), [], []

    def fetch() -> None:
        with CommCareClient(cc, credential_from_settings(cc), space.domain, stop=stop, on_wait=said.append) as client:
            try:
                client.get_json(f"/a/{space.domain}/api/v0.5/application/", what="Application API")
            except Cancelled as exc:
                outcome.append(exc)

    worker = threading.Thread(target=fetch)
    worker.start()
    deadline = time.monotonic() + 10
    while not said and time.monotonic() < deadline:
        time.sleep(0.01)
    assert said == [f"waiting 30 s: {RATE_LIMIT} (Application API, retry 1 of 8)"]
    stopped = time.monotonic()
    stop.set()
    worker.join(timeout=5)
    assert not worker.is_alive() and time.monotonic() - stopped < 2
    assert len(outcome) == 1 and "stopped on request" in str(outcome[0])


class _OwnBaseAddress:
    """The simulator as if its own base address were ``host``: CommCare builds absolute links from the
    address it is configured with, not from the request's Host, so a ``next`` link can name a host
    other than the one the client called."""

    def __init__(self, app, host: str):
        self.app, self.runtime, self.host = app, app.runtime, host.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            scope = dict(scope, headers=[(k, self.host if k == b"host" else v) for k, v in scope["headers"]])
        await self.app(scope, receive, send)


def test_next_links_naming_another_host_are_followed_on_the_base_url_only(space_factory, conn):
    with socket.socket() as trap:  # the host the links name: anything reaching it would carry the credential
        trap.bind(("127.0.0.1", 0))
        trap.listen(16)
        elsewhere = f"127.0.0.1:{trap.getsockname()[1]}"
        space = space_factory(cases=300, wrap=lambda app: _OwnBaseAddress(app, elsewhere))
        status = space.run(COMMCARE_CASE_PAGE_SIZE=40)
        assert status.phase == "Succeeded", status.error
        assert space.count(conn, "cases") == space.expected()["cases"]
        assert sum(space.sim.stats()["requests"]["cases"].values()) == 8  # 300 cases, 40 a page: every link followed
        trap.setblocking(False)
        with pytest.raises(BlockingIOError):
            trap.accept()


def test_a_403_names_the_permissions_and_membership_at_once(space):
    status = space.run(COMMCARE_USERNAME=OTHER_USER, COMMCARE_API_KEY=OTHER_API_KEY)  # not a member of the space
    assert status.phase == "Failed" and status.error["code"] == "AUTH_FAILED"
    message = status.error["message"]
    assert f"the API key of {OTHER_USER}" in message and f"project space {space.domain!r}" in message
    assert 'role permission "API access"' in message and "member" in message, message  # the Application API's
    assert OTHER_API_KEY not in message
    assert space.sim.stats()["total"] == 1  # no retry of a 403
