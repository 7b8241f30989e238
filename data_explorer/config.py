"""Settings, in one place.

Every setting has one environment name that users and deployments can rely on.
Values come from, in increasing precedence: defaults, an optional TOML file
(``DATA_EXPLORER_CONFIG``, else ``$DATA_EXPLORER_HOME/config.toml`` when it
exists) whose keys are the environment names in lower case, and the
environment. A malformed value fails at start-up with a message naming the
setting and where it came from; a setting a command needs but lacks fails the
same way (see ``Settings.require_commcare``).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it and says what to do."""

    code = "CONFIGURATION_ERROR"


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL such as https://www.commcarehq.org")
    return value.rstrip("/")


def _database_url(value: str) -> str:
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    if not value.startswith(("postgresql://", "postgres://")) and "=" not in value:
        raise ValueError("must be a PostgreSQL URL (postgresql://user@host:5432/db) or a key=value DSN")
    try:
        conninfo_to_dict(value)
    except ProgrammingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unparseable"
        raise ValueError(f"is not a valid connection string ({reason.replace(value, '...')})") from None
    return value


def _identifier(value: str) -> str:
    if not value or not value.replace("_", "").isalnum() or not value.isascii() or value[0].isdigit():
        raise ValueError("must be a lower-case SQL identifier of letters, digits and underscores")
    if value != value.lower() or len(value) > 40:
        raise ValueError("must be lower case and at most 40 characters")
    return value


def _role_prefix(value: str) -> str:
    _identifier(value)
    if len(value) > 7:
        raise ValueError("must be at most 7 characters (role names must fit PostgreSQL's 63 bytes)")
    return value


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError("must be a number of seconds, 0 or more")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("must be a positive number")
    return number


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("must be true or false")
    return lowered in ("true", "1", "yes")


def _bounded(low: int, high: int):
    def parse(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}")
        return number

    return parse


def _choice(*options: str):
    def parse(value: str) -> str:
        if value not in options:
            raise ValueError("must be one of " + ", ".join(options))
        return value

    return parse


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError("must be a Kubernetes name: lower-case letters, digits and '-', at most 63 characters")
    return value


def _image(value: str) -> str:
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$", value):
        raise ValueError("must be a container image reference such as registry.example/data-explorer:0.1.0")
    return value


def _quantity(value: str) -> str:
    if not re.match(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$", value):
        raise ValueError("must be a Kubernetes quantity such as 500m, 1, 512Mi or 2Gi")
    return value


def _labels(value: str) -> dict[str, str]:
    labels = {}
    for pair in value.split(","):
        key, sep, val = pair.strip().partition("=")
        if not sep or not re.match(r"^([a-z0-9.-]+/)?[A-Za-z0-9._-]{1,63}$", key) or not re.match(r"^[A-Za-z0-9._-]{0,63}$", val):
            raise ValueError("must be labels as key=value,key=value")
        labels[key] = val
    return labels


def _cidrs(value: str) -> tuple[str, ...]:
    import ipaddress

    out = []
    for part in value.split(","):
        try:
            out.append(str(ipaddress.ip_network(part.strip(), strict=False)))
        except ValueError:
            raise ValueError(f"{part.strip()!r} is not a CIDR such as 10.0.0.0/16") from None
    return tuple(out)


@dataclass(frozen=True)
class Setting:
    env: str
    parse: Any
    help: str
    default: Any = None
    secret: bool = False


def _default_home() -> str:
    return str(Path.home() / ".data-explorer")


_CHECKOUT = Path(__file__).resolve().parent.parent  # pipelines/ and dbt_project/ sit beside the package


def _directory(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ValueError("is not a directory")
    return path


# The single table of settings. Order is the order of `data-explorer --help`.
SETTINGS: tuple[Setting, ...] = (
    Setting("DATA_EXPLORER_HOME", str, "Data directory: the embedded PostgreSQL and the dbt work files.", None),
    Setting("DATABASE_URL", _database_url, "PostgreSQL to use; without it an embedded server starts in the data directory.", secret=True),
    Setting("COMMCARE_BASE_URL", _url, "CommCare HQ base URL, e.g. https://www.commcarehq.org."),
    Setting("COMMCARE_USERNAME", str, "CommCare user (web user e-mail) the API key belongs to."),
    Setting("COMMCARE_API_KEY", str, "CommCare API key of COMMCARE_USERNAME.", secret=True),
    Setting("COMMCARE_OAUTH_TOKEN", str, "CommCare OAuth access token, instead of an API key.", secret=True),
    Setting("COMMCARE_OAUTH_REFRESH_TOKEN", str, "CommCare OAuth refresh token: long runs renew the access token with it (needs COMMCARE_OAUTH_CLIENT_ID).", secret=True),
    Setting("COMMCARE_OAUTH_CLIENT_ID", str, "OAuth client id that CommCare issued the tokens to; used to refresh them."),
    Setting("COMMCARE_OAUTH_CLIENT_SECRET", str, "OAuth client secret of COMMCARE_OAUTH_CLIENT_ID (none for a public client).", secret=True),
    Setting("DATA_EXPLORER_SECRET_KEY", str, "Fernet key that encrypts stored secrets; without it one is generated in the data directory (secret.key, mode 0600).", secret=True),
    Setting("DATA_EXPLORER_CONTROL_SCHEMA", _identifier, "Schema of the control tables (runs, tenants, metadata).", "data_explorer"),
    Setting("DATA_EXPLORER_ROLE_PREFIX", _role_prefix, "Prefix of the per-tenant PostgreSQL roles.", "de"),
    Setting("DATA_EXPLORER_PIPELINES_DIR", _directory, "Directory of pipeline definitions (*.yml).", _CHECKOUT / "pipelines"),
    Setting("DATA_EXPLORER_DBT_PROJECT_DIR", _directory, "The dbt project that builds the tables agents see.", _CHECKOUT / "dbt_project"),
    Setting("COMMCARE_CASE_PAGE_SIZE", _bounded(1, 5000), "Cases per Case API v2 request (at most 5000).", 5000),
    Setting("COMMCARE_FORM_PAGE_SIZE", _bounded(1, 1000), "Forms per Form API request (at most 1000).", 1000),
    Setting("COMMCARE_USER_PAGE_SIZE", _bounded(1, 1000), "Users per User API request.", 1000),
    Setting("COMMCARE_HTTP_TIMEOUT", _positive_float, "Seconds before an API request times out.", 60.0),
    Setting("COMMCARE_MAX_RETRIES", _bounded(0, 50), "Retries of one request on 429, 5xx and connection errors.", 8),
    Setting("COMMCARE_MAX_BACKOFF", _positive_float, "Longest wait between retries when CommCare names no wait (no Retry-After), in seconds.", 300.0),
    Setting("COMMCARE_MAX_RETRY_AFTER", _positive_float, "Longest wait a 429's Retry-After may ask for, in seconds; CommCare's quotas run per minute, hour and day. A longer one fails the run at once.", 3600.0),
    Setting("COMMCARE_LOOKBACK_SECONDS", _non_negative_float, "Seconds behind the incremental cursor that each incremental run reads again: CommCare can index a record late, under a stamp earlier than records already read.", 3600.0),
    Setting("DATA_EXPLORER_RECONCILE_HOURS", _non_negative_float, "Hours between two looks for cases and forms deleted in CommCare, which an incremental run cannot see (a full run, or materialize --reconcile, looks at once).", 24.0),
    Setting("DATA_EXPLORER_RECONCILE_MAX_REQUESTS", _bounded(1, 100_000), "Requests one run may spend per source looking for deleted records; what it leaves is looked at by the next run.", 200),
    Setting("DATA_EXPLORER_STRICT_COUNTS", _boolean, "Fail a run whose full pass stored fewer records of a source than CommCare reported (otherwise the shortfall is flagged as incomplete).", False),
    Setting("DATA_EXPLORER_QUERY_MAX_ROWS", _bounded(1, 10_000), "Rows the query tool returns at most, unless a call asks for fewer or more (up to 10,000).", 500),
    Setting("DATA_EXPLORER_QUERY_MAX_BYTES", _bounded(1024, 64 * 1024 * 1024), "Bytes of result text the query tool returns at most.", 1024 * 1024),
    Setting("DATA_EXPLORER_QUERY_TIMEOUT", _positive_float, "Seconds a query may run before PostgreSQL stops it.", 30.0),
    Setting("DATA_EXPLORER_QUERY_SESSIONS", _bounded(1, 16), "Database sessions the gateway keeps per tenant for queries (the tenant's reader may open 20 at most).", 8),
    Setting("DATA_EXPLORER_CALLS_PER_CALLER", _bounded(1, 64), "Tool calls one CommCare user may have in progress at once; more are refused with RATE_LIMITED.", 8),
    Setting("DATA_EXPLORER_SCHEMA_TTL_HOURS", _non_negative_float, "Hours a tenant schema may stay unused before the gateway tears it down (0: never; on Kubernetes each TenantSchema's spec.ttl applies instead).", 24.0),
    Setting("DATA_EXPLORER_AUTH_CACHE_SECONDS", _non_negative_float, "Seconds the gateway trusts a caller's verified CommCare identity before asking CommCare again (0: every request).", 60.0),
    Setting("DATA_EXPLORER_CONTROL_PLANE", _choice("local", "kubernetes"), "Where runs execute and their state lives: local (child processes, control tables) or kubernetes (MaterializationRun resources and Jobs).", "local"),
    Setting("DATA_EXPLORER_NAMESPACE", _dns_label, "Kubernetes namespace of the TenantSchema and MaterializationRun resources (default: the pod's own namespace).", None),
    Setting("DATA_EXPLORER_RUNNER_IMAGE", _image, "Container image the operator runs materialization Jobs from.", None),
    Setting("DATA_EXPLORER_RUNNER_SERVICE_ACCOUNT", _dns_label, "ServiceAccount of runner pods (may only patch materializationruns/status).", "data-explorer-runner"),
    Setting("DATA_EXPLORER_RUNNER_SECRET", _dns_label, "Secret holding DATABASE_URL and DATA_EXPLORER_SECRET_KEY for runner pods, read by secretKeyRef.", "data-explorer-database"),
    Setting("DATA_EXPLORER_RUNNER_TTL_SECONDS", _bounded(0, 7 * 86400), "Seconds a finished runner Job is kept (ttlSecondsAfterFinished).", 3600),
    Setting("DATA_EXPLORER_RUNNER_MEMORY", _quantity, "Memory limit of runner pods.", "1Gi"),
    Setting("DATA_EXPLORER_RUNNER_CPU", _quantity, "CPU limit of runner pods.", "1"),
    Setting("DATA_EXPLORER_EGRESS_PROXY_URL", _url, "Egress proxy runner pods reach the CommCare API through (HTTPS_PROXY).", None),
    Setting("DATA_EXPLORER_EGRESS_PROXY_LABELS", _labels, "Pod labels of the egress proxy, k=v,k=v: the runner NetworkPolicy allows egress to those pods only.", None),
    Setting("DATA_EXPLORER_POSTGRES_CIDRS", _cidrs, "Comma-separated CIDRs where PostgreSQL is: the runner NetworkPolicy allows egress there.", None),
    Setting("DATA_EXPLORER_POSTGRES_PORT", _bounded(1, 65535), "PostgreSQL port the runner NetworkPolicy allows.", 5432),
    Setting("DATA_EXPLORER_KUBERNETES_API_CIDRS", _cidrs, "Comma-separated CIDRs of the Kubernetes API server: the runner NetworkPolicy allows egress there, for status patches.", None),
)

_BY_ENV = {s.env: s for s in SETTINGS}


@dataclass(frozen=True)
class CommCareSettings:
    base_url: str
    username: str | None
    api_key: str | None = field(repr=False)
    oauth_token: str | None = field(repr=False)
    case_page_size: int
    form_page_size: int
    user_page_size: int
    timeout: float
    max_retries: int
    max_backoff: float
    max_retry_after: float = 3600.0
    oauth_refresh_token: str | None = field(default=None, repr=False)
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = field(default=None, repr=False)
    lookback: float = 3600.0  # seconds an incremental pass reads again behind its cursor


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, Any] = field(repr=False)
    sources: Mapping[str, str] = field(repr=False)

    def __getitem__(self, env: str) -> Any:
        return self.values.get(env)

    @property
    def home(self) -> Path:
        return Path(self.values["DATA_EXPLORER_HOME"]).expanduser()

    @property
    def database_url(self) -> str | None:
        return self.values.get("DATABASE_URL")

    @property
    def pipelines_dir(self) -> Path:
        return Path(self.values["DATA_EXPLORER_PIPELINES_DIR"])

    @property
    def dbt_project_dir(self) -> Path:
        return Path(self.values["DATA_EXPLORER_DBT_PROJECT_DIR"])

    @property
    def control_schema(self) -> str:
        return self.values["DATA_EXPLORER_CONTROL_SCHEMA"]

    @property
    def role_prefix(self) -> str:
        return self.values["DATA_EXPLORER_ROLE_PREFIX"]

    def with_overrides(self, **env: Any) -> "Settings":
        """A copy with some settings replaced (values already parsed)."""
        values = dict(self.values)
        sources = dict(self.sources)
        for key, value in env.items():
            if key not in _BY_ENV:
                raise KeyError(key)
            values[key] = value
            sources[key] = "override"
        return Settings(values, sources)

    def require_commcare(self, *, credential: bool = True) -> CommCareSettings:
        """The CommCare part, or a SettingsError naming what is missing.

        ``credential=False`` for processes that get their credential elsewhere (the HTTP gateway's
        callers bring their own; a runner started by the gateway reads the caller's from the store).
        """
        v = self.values
        if not v.get("COMMCARE_BASE_URL"):
            raise SettingsError(
                "COMMCARE_BASE_URL is not set: set it to your CommCare HQ address "
                "(e.g. https://www.commcarehq.org) in the environment or the config file."
            )
        has_key = bool(v.get("COMMCARE_API_KEY"))
        has_oauth = bool(v.get("COMMCARE_OAUTH_TOKEN") or v.get("COMMCARE_OAUTH_REFRESH_TOKEN"))
        if credential and not has_key and not has_oauth:
            raise SettingsError(
                "No CommCare credential: set COMMCARE_USERNAME with COMMCARE_API_KEY, or COMMCARE_OAUTH_TOKEN."
            )
        if has_key and not v.get("COMMCARE_USERNAME"):
            raise SettingsError("COMMCARE_API_KEY is set but COMMCARE_USERNAME is not: set the user the key belongs to.")
        if not has_key and v.get("COMMCARE_OAUTH_REFRESH_TOKEN") and not v.get("COMMCARE_OAUTH_CLIENT_ID"):
            raise SettingsError(
                "COMMCARE_OAUTH_REFRESH_TOKEN is set but COMMCARE_OAUTH_CLIENT_ID is not: "
                "set the OAuth client the tokens were issued to."
            )
        return CommCareSettings(
            base_url=v["COMMCARE_BASE_URL"],
            username=v.get("COMMCARE_USERNAME"),
            api_key=v.get("COMMCARE_API_KEY"),
            oauth_token=v.get("COMMCARE_OAUTH_TOKEN"),
            case_page_size=v["COMMCARE_CASE_PAGE_SIZE"],
            form_page_size=v["COMMCARE_FORM_PAGE_SIZE"],
            user_page_size=v["COMMCARE_USER_PAGE_SIZE"],
            timeout=v["COMMCARE_HTTP_TIMEOUT"],
            max_retries=v["COMMCARE_MAX_RETRIES"],
            max_backoff=v["COMMCARE_MAX_BACKOFF"],
            max_retry_after=v["COMMCARE_MAX_RETRY_AFTER"],
            oauth_refresh_token=v.get("COMMCARE_OAUTH_REFRESH_TOKEN"),
            oauth_client_id=v.get("COMMCARE_OAUTH_CLIENT_ID"),
            oauth_client_secret=v.get("COMMCARE_OAUTH_CLIENT_SECRET"),
            lookback=v["COMMCARE_LOOKBACK_SECONDS"],
        )


def _parse(setting: Setting, raw: Any, source: str) -> Any:
    text = str(raw).strip()
    if text == "":
        return None
    try:
        return setting.parse(text)
    except (ValueError, TypeError) as exc:
        shown = "(hidden)" if setting.secret else repr(text)
        raise SettingsError(f"Setting {setting.env} from {source} is invalid: {shown} {exc}.") from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"Cannot read config file {path}: {exc.strerror}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"Config file {path} is not valid TOML: {exc}.") from None
    out = {}
    for key, value in data.items():
        env = key.upper()
        if env not in _BY_ENV:
            known = ", ".join(s.env.lower() for s in SETTINGS)
            raise SettingsError(f"Config file {path}: unknown key {key!r}. Known keys: {known}.")
        if isinstance(value, (dict, list)):
            raise SettingsError(f"Config file {path}: key {key!r} must be a single value.")
        out[env] = value
    return out


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate all settings; raise SettingsError naming the first bad one."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        if s.default is not None:
            values[s.env] = s.default
            sources[s.env] = "default"

    home_raw = env.get("DATA_EXPLORER_HOME") or _default_home()
    config_path = env.get("DATA_EXPLORER_CONFIG")
    if config_path:
        file_values = _read_file(Path(config_path).expanduser())
        file_source = f"config file {config_path}"
    else:
        candidate = Path(home_raw).expanduser() / "config.toml"
        file_values = _read_file(candidate) if candidate.is_file() else {}
        file_source = f"config file {candidate}"
    for key, raw in file_values.items():
        parsed = _parse(_BY_ENV[key], raw, file_source)
        if parsed is not None:
            values[key], sources[key] = parsed, file_source

    for s in SETTINGS:
        if s.env in env:
            parsed = _parse(s, env[s.env], "the environment")
            if parsed is not None:
                values[s.env], sources[s.env] = parsed, "the environment"

    values.setdefault("DATA_EXPLORER_HOME", home_raw)
    if "DATA_EXPLORER_HOME" not in sources:
        sources["DATA_EXPLORER_HOME"] = "default"
    return Settings(values, sources)


def settings_help() -> str:
    """The settings table for --help."""
    lines = ["settings (environment, or lower-case keys in $DATA_EXPLORER_HOME/config.toml):"]
    for s in SETTINGS:
        default = "" if s.default is None else f" [default: {s.default}]"
        lines.append(f"  {s.env:<30} {s.help}{default}")
    lines.append(f"  {'DATA_EXPLORER_CONFIG':<30} Path of a config file to read instead.")
    return "\n".join(lines)


__all__ = ["CommCareSettings", "Settings", "SettingsError", "load_settings", "settings_help", "SETTINGS"]
