"""Every parameter is untrusted: odd values get CommCare's 4xx answers, never a 500."""

from __future__ import annotations

import itertools

import pytest
from simulator_helpers import DOMAIN

ODD_VALUES = ["", " ", "0", "-1", "1e3", "99999999999999999999999", "true", "null", "%00", "\x00", "é", "😊",
              "2024-02-30", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2024-01-01T25:00:00",
              "x" * 5000, "a,b,,c", "../../etc/passwd", "<script>", "' OR 1=1 --"]
PARAMS = {
    f"/a/{DOMAIN}/api/case/v2/": ["limit", "cursor", "case_type", "closed", "indexed_on.gte", "last_modified.lt",
                                  "date_closed.lte", "properties.dob", "indices.parent", "include_deprecated", "bogus"],
    f"/a/{DOMAIN}/api/v0.5/form/": ["limit", "offset", "order_by", "indexed_on_start", "received_on_end", "xmlns",
                                    "app_id", "case_id", "include_archived"],
    f"/a/{DOMAIN}/api/v0.5/user/": ["limit", "offset", "group", "archived", "extras"],
    f"/a/{DOMAIN}/api/v0.5/application/": ["extras"],
    "/api/user_domains/v1/": ["limit", "offset"],
}


@pytest.mark.parametrize("path", list(PARAMS))
def test_odd_parameter_values_never_cause_a_server_error(client, path):
    for param, value in itertools.product(PARAMS[path], ODD_VALUES):
        response = client.get(path, params={param: value})
        assert response.status_code in (200, 400), (param, value, response.status_code, response.text[:200])
        if response.status_code == 400:
            assert "error" in response.json()


@pytest.mark.parametrize("path", [
    f"/a/{DOMAIN}/api/case/v2/%2e%2e", f"/a/{DOMAIN}/api/case/v2/😊", f"/a/{DOMAIN}/api/case/v2/a,,b,",
    f"/a/{DOMAIN}/api/v0.5/form/%00/", f"/a/{DOMAIN}/api/v0.5/user/😊/", f"/a/{DOMAIN}/api/v0.5/application/x%2Fy/",
    "/a/%F0%9F%98%8A/api/case/v2/", "/a//api/case/v2/", "/a/demo/api/nothing/", "/", "/_sim/nothing",
])
def test_odd_paths_never_cause_a_server_error(client, path):
    assert client.get(path).status_code in (200, 400, 403, 404)


def test_wrong_methods_and_bodies(client):
    assert client.delete(f"/a/{DOMAIN}/api/case/v2/").status_code == 405
    assert client.post(f"/a/{DOMAIN}/api/case/v2/bulk-fetch/", content=b"x" * (2 << 20)).status_code == 413
    assert client.post(f"/a/{DOMAIN}/api/case/v2/bulk-fetch/", json={"case_ids": ["x"] * 5001}).status_code == 400
    assert client.post("/oauth/token/", content=b"\xff\xfe", headers={"content-type": "text/plain"}).status_code == 400
    assert client.put("/_sim/faults", content=b"[]").status_code == 400
    assert client.post("/_sim/clock", json={"advance": "soon"}).status_code == 400
