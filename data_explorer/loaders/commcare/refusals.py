"""What a CommCare refusal means and what to do about it: the message of a 401, a 403 or a plan without API
access. Pure.

As CommCare HQ's API code reads: every project-space API asks for the role permission "API access"
besides its own (the Case API v2 and the Form API "edit data", the User API "edit mobile workers", the
web-user resource "edit web users", the Application API nothing more), and answers 403 to a user who
lacks one, or who is not a member; an API key can also be restricted to one project space or role. A
project space whose plan lacks API access gets 401 ``{"error": "Your current subscription does not
have access to this feature"}`` from the v0.5 resources, whatever the credential, and the "only
available to projects subscribed to ... plan" page from the Case API v2.
"""

from __future__ import annotations

import json
import re

# (path pattern, the role permissions the endpoint needs in the project space)
PERMISSIONS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"/api/case/v2(/|$)"), ("edit data", "API access")),
    (re.compile(r"/api/(v0\.5/form|form/v1)(/|$)"), ("edit data", "API access")),
    (re.compile(r"/api/(v0\.5/user|user/v1)(/|$)"), ("edit mobile workers", "API access")),
    (re.compile(r"/api/(v0\.5/web-user|web-user/v1)(/|$)"), ("edit web users", "API access")),
)
# the words of CommCare's answers when the project space's plan lacks API access
PLAN_WORDS = (b"does not have access to this feature", b"only available to projects subscribed to")
MAX_QUOTED = 200  # characters of CommCare's own error text shown in a message


def needed_permissions(path: str) -> tuple[str, ...]:
    """The role permissions the API at ``path`` needs; "API access" alone for the others (the Application API)."""
    return next((needed for pattern, needed in PERMISSIONS if pattern.search(path)), ("API access",))


def says_plan_lacks_api(body: bytes) -> bool:
    """Whether CommCare's answer says the project space's plan does not include API access."""
    head = body[:65536].lower()
    return any(words in head for words in PLAN_WORDS)


def commcare_said(body: bytes) -> str | None:
    """CommCare's own ``error`` text from a small JSON error body, on one line and shortened; else None."""
    if not body or len(body) > 4096:
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    said = data.get("error") if isinstance(data, dict) else None
    if not isinstance(said, str) or not said.strip():
        return None
    said = " ".join(said.split())
    return said if len(said) <= MAX_QUOTED else said[: MAX_QUOTED - 1] + "…"


def _quoted(said: str | None) -> str:
    return f" CommCare said: {said!r}." if said else ""


def _listed(words: tuple[str, ...]) -> str:
    quoted = [f'"{w}"' for w in words]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def forbidden(refused: str, path: str, domain: str, said: str | None) -> str:
    """A 403: the user is known, but lacks a permission the endpoint needs, or is not a member."""
    needed = needed_permissions(path)
    noun = "permission" if len(needed) == 1 else "permissions"
    return (
        f"{refused} The user needs the role {noun} {_listed(needed)} in project space {domain!r}, and must be "
        "a member of it: a project administrator grants them under Users > Roles & Permissions. An API key "
        f"restricted to another project space or role is refused the same way.{_quoted(said)}"
    )


def plan_lacks_api(refused: str, domain: str, said: str | None) -> str:
    return (
        f"{refused} Project space {domain!r} is on a CommCare plan without API access, so no credential or "
        "permission can read it through the API; a project administrator can change the plan "
        f"(Project Settings > Subscription).{_quoted(said)}"
    )


def unauthorized(refused: str, domain: str, said: str | None) -> str:
    """A 401 that is not about the plan: the credential itself was not accepted."""
    return (
        f"{refused} CommCare did not accept it: the API key or token is wrong, expired or revoked, or its user "
        f"is deactivated or not a member of project space {domain!r}.{_quoted(said)}"
    )
