"""Which URL a ``next`` link is followed at: its path and query on COMMCARE_BASE_URL, within the project
space's API, whatever host it names."""

import pytest

from data_explorer.config import load_settings
from data_explorer.loaders.commcare.client import CommCareClient
from data_explorer.loaders.commcare.credentials import credential_from_settings
from data_explorer.loaders.errors import MalformedResponse


@pytest.fixture
def client(tmp_path):
    def make(base_url: str) -> CommCareClient:
        cc = load_settings({
            "DATA_EXPLORER_HOME": str(tmp_path), "COMMCARE_BASE_URL": base_url,
            "COMMCARE_USERNAME": "u@example.org", "COMMCARE_API_KEY": "k",
        }).require_commcare()
        return CommCareClient(cc, credential_from_settings(cc), "demo")

    return make


@pytest.mark.parametrize("base, link, followed", [
    ("https://www.commcarehq.org", "https://commcarehq.org/a/demo/api/case/v2/?cursor=abc%3D",
     "https://www.commcarehq.org/a/demo/api/case/v2/?cursor=abc%3D"),
    ("https://www.commcarehq.org", "http://elsewhere.example:8443/a/demo/api/case/v2/?cursor=x#frag",
     "https://www.commcarehq.org/a/demo/api/case/v2/?cursor=x"),
    ("https://user:pw@www.commcarehq.org", "https://evil.example/a/demo/api/case/v2/?cursor=x",
     "https://user:pw@www.commcarehq.org/a/demo/api/case/v2/?cursor=x"),
    ("https://hq.example.org/commcare/", "https://hq-internal:8000/commcare/a/demo/api/case/v2/?cursor=x",
     "https://hq.example.org/commcare/a/demo/api/case/v2/?cursor=x"),
    ("https://www.commcarehq.org", "/a/demo/api/case/v2/?cursor=x", "https://www.commcarehq.org/a/demo/api/case/v2/?cursor=x"),
])
def test_a_link_is_followed_on_the_base_url(client, base, link, followed):
    with client(base) as c:
        assert c.follow(link, "Case API v2") == followed


@pytest.mark.parametrize("link", [
    "https://www.commcarehq.org/a/other/api/case/v2/?cursor=x",  # another project space
    "https://www.commcarehq.org/oauth/token/",
    "https://www.commcarehq.org/a/demo/api/../../../oauth/token/",
    "https://www.commcarehq.org/a/demo/api/%2e%2e/%2E%2E/x",
    "https://www.commcarehq.org/a/demo/apix/",
    "javascript:alert(1)",
    "",
])
def test_a_link_outside_the_project_spaces_api_is_refused(client, link):
    with client("https://www.commcarehq.org") as c, pytest.raises(MalformedResponse, match="outside project space 'demo'"):
        c.follow(link, "Case API v2")
