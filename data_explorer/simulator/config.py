"""What a simulator serves: project spaces, web users, token lifetimes, faults. Plain frozen dataclasses.

``demo_config()`` is the configuration of the demo and of ``data-explorer
simulator``: project space ``demo`` plus ``demo-other``, user
``demo@example.org`` (API key ``demo-api-key``, member of ``demo``) and user
``other@example.org`` (API key ``other-api-key``, member of the other spaces).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

FAULT_KINDS = (
    "unauthorized",  # 401 {"error": "not authorized"}, whatever the credential
    "rate_limit",  # 429 with Retry-After (the Case API v2 way)
    "rate_limit_bare",  # 429 without Retry-After (the v0.5 way)
    "server_error",  # 500, 502 or 503
    "drop_before_headers",  # the connection closes before any response byte
    "drop_mid_body",  # the connection closes after half of the body
    "html_error",  # 200 with an HTML error page
    "truncated_json",  # 200 with the JSON body cut in half
    "missing_keys",  # 200 with JSON that lacks the keys a client needs
    "slow",  # the normal response, after FaultConfig.slow_delay seconds
    "unstorable_text",  # 200 with \u0000 and a lone \ud800 in names: valid JSON, not storable in PostgreSQL
)
FAULT_SCOPES = ("all", "cases", "forms", "users", "apps", "xforms", "identity")

_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class DomainConfig:
    """One synthetic project space."""

    name: str
    """The domain, as it appears in URLs: lower-case letters, digits and dashes."""
    cases: int = 2000
    """Cases at data version 0 (before any mutation)."""
    forms: int | None = None
    """Forms at data version 0; None means as many as cases (none below 8 cases). Forms need 8 cases (a family)."""
    users: int = 10
    """Active mobile workers served by the User API; they own the cases and submit the forms."""
    deactivated_users: int = 0
    """Deactivated mobile workers: listed only with ``archived=true``, yet they still own cases and
    submit forms, as workers deactivated after their work do in CommCare."""
    web_users: int = 0
    """Web users of the space besides the configured API users (all are served by ``/web-user/``) who
    also own cases and submit forms, as web users do through Web Apps."""
    project_name: str | None = None
    """Display name in ``user_domains``; None derives one from the domain."""
    deprecated_case_types: tuple[str, ...] = ()
    """Case types that ``include_deprecated=false`` hides from the Case API v2."""
    integration_privilege: bool = True
    """Whether the plan has CommCare's integration privilege; without it ``user_domains`` leaves the
    space out, though its members may still use its APIs."""
    property_paths: bool = False
    """Modules list ``name`` and properties of the cases they index (``parent/<p>``, ``host/<p>``) among
    their case properties, as CommCare's app builder does."""
    copied_app: bool = False
    """A copy of the first app with the same form xmlns; every other form of its kinds comes from the copy."""
    casexml_v1: bool = False
    """Update Household forms write CaseXML 1.0 blocks (``case_id`` and ``date_modified`` as elements)."""
    renamed_questions: bool = False
    """Some questions are named apart from the case property they save (``contact_phone`` saves
    ``phone_number``): only the forms' XML says which question saves which property."""

    def __post_init__(self) -> None:
        if not _DOMAIN.match(self.name):
            raise ValueError(f"domain {self.name!r}: use lower-case letters, digits and dashes")
        if self.cases < 0 or self.users < 1 or (self.forms is not None and self.forms < 0):
            raise ValueError(f"domain {self.name!r}: cases and forms must be >= 0 and users >= 1")
        if self.deactivated_users < 0 or self.web_users < 0:
            raise ValueError(f"domain {self.name!r}: deactivated_users and web_users must be >= 0")
        if self.form_count and self.cases < 8:
            raise ValueError(f"domain {self.name!r}: forms need at least 8 cases to refer to (one family)")

    @property
    def form_count(self) -> int:
        if self.forms is None:
            return self.cases if self.cases >= 8 else 0
        return self.forms

    @property
    def display_name(self) -> str:
        return self.project_name or self.name.replace("-", " ").title()


@dataclass(frozen=True)
class WebUser:
    """A web user who calls the APIs, with an API key and project-space memberships."""

    username: str
    api_key: str
    domains: tuple[str, ...]
    first_name: str = ""
    last_name: str = ""
    email: str = ""

    @property
    def email_address(self) -> str:
        return self.email or (self.username if "@" in self.username else "")


@dataclass(frozen=True)
class FaultRule:
    """Answer a share ``rate`` of the requests of endpoint kind ``scope`` with fault ``kind``."""

    kind: str
    rate: float
    scope: str = "all"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(FAULT_KINDS)}")
        if self.scope not in FAULT_SCOPES:
            raise ValueError(f"unknown fault scope {self.scope!r}; known: {', '.join(FAULT_SCOPES)}")
        if not 0.0 <= float(self.rate) <= 1.0:
            raise ValueError(f"fault rate of {self.kind} must be within [0, 1], not {self.rate}")


@dataclass(frozen=True)
class FaultConfig:
    """Fault injection. Rules are tried in order, one draw each; the first that fires wins."""

    rules: tuple[FaultRule, ...] = ()
    seed: int = 0
    """Seed of the draws: the same requests in the same order meet the same faults."""
    slow_delay: float = 1.0
    """Seconds a ``slow`` fault waits before answering."""
    retry_after: int = 1
    """Seconds announced in the Retry-After header of ``rate_limit`` faults."""

    @classmethod
    def from_rates(cls, rates: dict[str, float], scope: str = "all", **options) -> "FaultConfig":
        return cls(rules=tuple(FaultRule(kind, float(rate), scope) for kind, rate in rates.items()), **options)

    @classmethod
    def from_json(cls, data: object) -> "FaultConfig":
        """From the body of ``PUT /_sim/faults``: ``{"rules": [{kind, rate, scope}], seed, slow_delay,
        retry_after}`` or the short form ``{"rates": {kind: rate}, "scope": ...}``. ValueError when malformed."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        known = {"rules", "rates", "scope", "seed", "slow_delay", "retry_after"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
        rules: list[FaultRule] = []
        for rule in data.get("rules") or []:
            if not isinstance(rule, dict) or set(rule) - {"kind", "rate", "scope"}:
                raise ValueError("each rule is an object with kind, rate and optionally scope")
            rules.append(FaultRule(str(rule.get("kind")), _number(rule.get("rate"), "rate"), str(rule.get("scope", "all"))))
        rates = data.get("rates") or {}
        if not isinstance(rates, dict):
            raise ValueError("rates must be an object of kind: rate")
        for kind, rate in rates.items():
            rules.append(FaultRule(kind, _number(rate, "rate"), str(data.get("scope", "all"))))
        return cls(
            rules=tuple(rules),
            seed=int(_number(data.get("seed", 0), "seed")),
            slow_delay=_number(data.get("slow_delay", 1.0), "slow_delay"),
            retry_after=int(_number(data.get("retry_after", 1), "retry_after")),
        )

    def to_json(self) -> dict:
        return {
            "rules": [{"kind": r.kind, "rate": r.rate, "scope": r.scope} for r in self.rules],
            "seed": self.seed,
            "slow_delay": self.slow_delay,
            "retry_after": self.retry_after,
        }


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a non-negative number")
    return float(value)


@dataclass(frozen=True)
class Quota:
    """CommCare's API rate limits, per minute: a 429 once a window's requests are used up.

    Case API v2 answers it with an empty body and ``Retry-After`` (seconds to the window's end);
    v0.5 resources with a bare 429 (``corehq/apps/api/decorators.py``, ``resources/meta.py``).
    A throttled request is not counted, as CommCare counts only the requests it serves."""

    per_domain_per_minute: int | None = None
    """Requests one project space serves in a minute, whoever asks; None: no limit."""
    per_user_per_minute: int | None = None
    """Requests one API user makes in a minute, to any project space; None: no limit."""

    def __post_init__(self) -> None:
        for name in ("per_domain_per_minute", "per_user_per_minute"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a whole number of requests, 1 or more (or null for no limit)")

    @property
    def active(self) -> bool:
        return self.per_domain_per_minute is not None or self.per_user_per_minute is not None


@dataclass(frozen=True)
class WireBehaviour:
    """How CommCare HQ serves records over time, each behaviour a switch, all off by default.

    Kept apart from the project spaces (``DomainConfig``): these are the server's ways, not the data.
    Every switch can be changed while serving (``PUT /_sim/behaviour``, ``RunningSimulator.set_behaviour``).
    """

    millisecond_order: bool = False
    """Order and filter ``indexed_on`` at the search index's millisecond precision, ties by id (Case API v2)
    or by submission (Form API), while printing the stored value with its microseconds: within one
    millisecond the printed values go backwards (``corehq/apps/hqcase/api/get_list.py``)."""
    mixed_timestamps: bool = False
    """Print the timestamps of records in several spellings of the same instant, as CommCare prints older
    records: 6, 3 or no fractional digits, with ``Z``, with ``+00:00`` or with neither."""
    strict_form_dates: bool = False
    """The Form API's date parameters accept exactly CommCare's formats (``YYYY-MM-DD``,
    ``YYYY-MM-DDTHH:MM:SS``, ``YYYY-MM-DDTHH:MM:SS.ffffff``, ``YYYY-MM-DDTHH:MMZ``; ``corehq/apps/api/es.py``)
    and a date alone means its midnight, for ``_end`` too; anything else is a 400
    ``{"error": "Bad query parameter: Unknown date format: ..."}``. Off: ``Z`` is also accepted everywhere and
    a date alone ends at the end of its day."""
    quota: Quota = field(default_factory=Quota)
    """Per-domain and per-user requests per minute; no limit by default."""
    public_base_url: str | None = None
    """The base of the absolute Case API v2 ``next`` links (and of form attachment URLs), as CommCare builds
    them from its own configured address, not the one the client used: ``http://localhost:{port}`` (``{port}``
    is the port the client connected to). None: the address of the request."""

    def __post_init__(self) -> None:
        if self.public_base_url is not None and not re.match(r"^https?://[^/?#\s]+$", self.public_base_url):
            raise ValueError(f"public_base_url {self.public_base_url!r}: use scheme://host[:port], without a path")

    @classmethod
    def from_json(cls, data: object) -> "WireBehaviour":
        """From the body of ``PUT /_sim/behaviour`` (the keys of ``to_json``, each optional). ValueError when
        malformed."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        unknown = set(data) - {"millisecond_order", "mixed_timestamps", "strict_form_dates", "quota", "public_base_url"}
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
        switches = {}
        for name in ("millisecond_order", "mixed_timestamps", "strict_form_dates"):
            value = data.get(name, False)
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false")
            switches[name] = value
        quota = data.get("quota") or {}
        if not isinstance(quota, dict) or set(quota) - {"per_domain_per_minute", "per_user_per_minute"}:
            raise ValueError("quota is an object with per_domain_per_minute and/or per_user_per_minute")
        base = data.get("public_base_url")
        if base is not None and not isinstance(base, str):
            raise ValueError("public_base_url must be a string or null")
        return cls(**switches, quota=Quota(**quota), public_base_url=base)

    def to_json(self) -> dict:
        return {
            "millisecond_order": self.millisecond_order,
            "mixed_timestamps": self.mixed_timestamps,
            "strict_form_dates": self.strict_form_dates,
            "quota": {"per_domain_per_minute": self.quota.per_domain_per_minute,
                      "per_user_per_minute": self.quota.per_user_per_minute},
            "public_base_url": self.public_base_url,
        }


@dataclass(frozen=True)
class SimulatorConfig:
    domains: tuple[DomainConfig, ...]
    users: tuple[WebUser, ...]
    seed: int = 7
    """Seed of all synthetic data: the same seed and calls give the same bytes."""
    token_ttl: float = 15 * 60
    """Seconds an OAuth access token lives (CommCare: 15 minutes)."""
    refresh_ttl: float = 15 * 24 * 3600
    """Seconds an OAuth refresh token lives (CommCare: 15 days)."""
    faults: FaultConfig = field(default_factory=FaultConfig)
    control_api: bool = True
    """Serve ``/_sim/`` (state, mutate, faults, behaviour, stats, reset, clock) without CommCare auth."""
    behaviour: WireBehaviour = field(default_factory=WireBehaviour)
    """How records are served over time: CommCare's ways, each off by default."""

    def __post_init__(self) -> None:
        names = [d.name for d in self.domains]
        if len(set(names)) != len(names):
            raise ValueError("domain names must be unique")
        usernames = [u.username.lower() for u in self.users]
        if len(set(usernames)) != len(usernames):
            raise ValueError("usernames must be unique")
        if self.token_ttl <= 0 or self.refresh_ttl <= 0:
            raise ValueError("token lifetimes must be positive")

    def domain(self, name: str) -> DomainConfig | None:
        return next((d for d in self.domains if d.name == name), None)

    def with_faults(self, faults: FaultConfig) -> "SimulatorConfig":
        return replace(self, faults=faults)

    def with_behaviour(self, behaviour: WireBehaviour) -> "SimulatorConfig":
        return replace(self, behaviour=behaviour)


DEMO_USER = "demo@example.org"
DEMO_API_KEY = "demo-api-key"
OTHER_USER = "other@example.org"
OTHER_API_KEY = "other-api-key"


def demo_config(
    *,
    cases: int = 2000,
    forms: int | None = None,
    users: int = 10,
    domains: tuple[str, ...] = ("demo", "demo-other"),
    seed: int = 7,
    token_ttl: float = 15 * 60,
    faults: FaultConfig | None = None,
    behaviour: WireBehaviour | None = None,
    **space: object,
) -> SimulatorConfig:
    """The demo setup: the demo user belongs to the first domain, the other user to the rest.

    Every domain gets the same sizes; the second and later ones are smaller when
    ``cases`` is large, so a demo of a million cases does not serve two millions.
    ``space`` sets other ``DomainConfig`` fields of every domain (``web_users=2``).
    """
    if not domains:
        raise ValueError("at least one domain")
    first, rest = domains[0], tuple(domains[1:])
    spaces = [DomainConfig(first, cases=cases, forms=forms, users=users, **space)]
    small = min(cases, 200)
    spaces += [DomainConfig(d, cases=small, forms=None if forms is None else min(forms, small), users=users, **space)
               for d in rest]
    people = [WebUser(DEMO_USER, DEMO_API_KEY, (first,), "Demo", "User")]
    people.append(WebUser(OTHER_USER, OTHER_API_KEY, rest, "Other", "Person"))
    return SimulatorConfig(
        domains=tuple(spaces), users=tuple(people), seed=seed, token_ttl=token_ttl, faults=faults or FaultConfig(),
        behaviour=behaviour or WireBehaviour(),
    )
