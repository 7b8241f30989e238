"""What a 401 or 403 from CommCare is said to mean: the permission each API needs, or the plan."""

import pytest

from data_explorer.loaders.commcare import refusals

REFUSED = "CommCare refused the API key of u@example.org for project space 'demo' (HTTP 403 from X)."


@pytest.mark.parametrize("path, needed", [
    ("/a/demo/api/case/v2/", '"edit data" and "API access"'),
    ("/a/demo/api/case/v2", '"edit data" and "API access"'),
    ("/a/demo/api/v0.5/form/", '"edit data" and "API access"'),
    ("/a/demo/api/form/v1/", '"edit data" and "API access"'),
    ("/a/demo/api/v0.5/user/", '"edit mobile workers" and "API access"'),
    ("/a/demo/api/user/v1/", '"edit mobile workers" and "API access"'),
    ("/a/demo/api/v0.5/web-user/", '"edit web users" and "API access"'),
    ("/a/demo/api/v0.5/application/", '"API access"'),
])
def test_a_403_names_the_permissions_the_endpoint_needs(path, needed):
    message = refusals.forbidden(REFUSED, path, "demo", None)
    assert message.startswith(REFUSED)
    assert f"role permission{'s' if ' and ' in needed else ''} {needed} in project space 'demo'" in message
    assert "member" in message and "check your credential" not in message.lower()


def test_the_plan_without_api_access_is_recognised_in_either_answer():
    tastypie = b'{"error": "Your current subscription does not have access to this feature"}'
    page = b"<html><p class='lead'><strong>API Access</strong> is only available to projects subscribed to <strong>Pro</strong></p>"
    assert refusals.says_plan_lacks_api(tastypie) and refusals.says_plan_lacks_api(page)
    assert not refusals.says_plan_lacks_api(b'{"error": "not authorized"}')
    message = refusals.plan_lacks_api(REFUSED, "demo", refusals.commcare_said(tastypie))
    assert "plan without API access" in message and "Subscription" in message
    assert "'Your current subscription does not have access to this feature'" in message


def test_a_401_says_what_may_be_wrong_and_quotes_commcare_safely():
    said = refusals.commcare_said(b'{"error": "API access has been temporarily cut off\\n due to too many requests."}')
    assert said == "API access has been temporarily cut off due to too many requests."
    message = refusals.unauthorized(REFUSED, "demo", said)
    assert "wrong, expired or revoked" in message and "deactivated" in message and "not a member" in message
    assert said in message
    long = refusals.commcare_said(b'{"error": "' + b"x" * 500 + b'"}')
    assert len(long) == refusals.MAX_QUOTED
    for body in (b"", b"<html>", b"[1]", b'{"error": 5}', b'{"error": " "}', b"{" + b" " * 5000 + b"}"):
        assert refusals.commcare_said(body) is None
