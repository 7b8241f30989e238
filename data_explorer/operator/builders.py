"""Pure builders of what the operator creates for a run (Job, credentials Secret,
NetworkPolicy) and pure readings of what it observes (Job outcome, spec checks).

No I/O here: every function takes plain data and returns plain data, so each can
be tested on its own and the reconcilers stay small.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from data_explorer.kube.resources import LABEL_PASS_THROUGH, LABEL_RUN, LABEL_RUN_ID, LABEL_TENANT, MANAGED_BY
from data_explorer.warehouse.naming import InvalidDomain, validate_domain

RUNNER_UID = 10001
PROXY_PORT_DEFAULT = 3128
# Keys of the per-run credentials Secret: the runner's environment names.
CREDENTIAL_KEYS = ("COMMCARE_USERNAME", "COMMCARE_API_KEY", "COMMCARE_OAUTH_TOKEN")
# Keys of a pass-through Secret named by spec.credentialsSecretRef.
PASS_THROUGH_KEYS = {"username": "COMMCARE_USERNAME", "apiKey": "COMMCARE_API_KEY", "oauthToken": "COMMCARE_OAUTH_TOKEN"}
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class SpecError(ValueError):
    """A resource's spec (or a Secret it names) cannot work; the message says what to change."""


@dataclass(frozen=True)
class RunnerConfig:
    """How runner pods are set up: from the operator's settings."""

    image: str
    service_account: str
    runner_secret: str
    ttl_seconds: int
    memory: str
    cpu: str
    control_schema: str
    role_prefix: str
    proxy_url: str | None = None
    proxy_labels: dict[str, str] | None = None
    postgres_cidrs: tuple[str, ...] = ()
    postgres_port: int = 5432
    api_cidrs: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings) -> "RunnerConfig":
        if not settings["DATA_EXPLORER_RUNNER_IMAGE"]:
            from data_explorer.config import SettingsError

            raise SettingsError("DATA_EXPLORER_RUNNER_IMAGE is not set: the operator needs the image runner Jobs run from.")
        return cls(
            image=settings["DATA_EXPLORER_RUNNER_IMAGE"],
            service_account=settings["DATA_EXPLORER_RUNNER_SERVICE_ACCOUNT"],
            runner_secret=settings["DATA_EXPLORER_RUNNER_SECRET"],
            ttl_seconds=settings["DATA_EXPLORER_RUNNER_TTL_SECONDS"],
            memory=settings["DATA_EXPLORER_RUNNER_MEMORY"],
            cpu=settings["DATA_EXPLORER_RUNNER_CPU"],
            control_schema=settings.control_schema,
            role_prefix=settings.role_prefix,
            proxy_url=settings["DATA_EXPLORER_EGRESS_PROXY_URL"],
            proxy_labels=settings["DATA_EXPLORER_EGRESS_PROXY_LABELS"],
            postgres_cidrs=settings["DATA_EXPLORER_POSTGRES_CIDRS"] or (),
            postgres_port=settings["DATA_EXPLORER_POSTGRES_PORT"],
            api_cidrs=settings["DATA_EXPLORER_KUBERNETES_API_CIDRS"] or (),
        )


@dataclass(frozen=True)
class RunPlan:
    """One run, read and checked from its MaterializationRun and TenantSchema."""

    namespace: str
    name: str
    uid: str
    run_id: str
    tenant_schema: str
    domain: str
    base_url: str
    pipeline: str
    mode: str
    deadline: int
    credentials_secret: str  # the Secret the credentials are copied from
    pass_through: bool
    credential_keys: dict[str, str]  # key in that Secret -> runner environment name


# -- names -----------------------------------------------------------------

def child_name(run_name: str, suffix: str = "") -> str:
    """A deterministic name for a run's child object, valid as a DNS label (<= 63)."""
    base = f"{run_name}{suffix}"
    if len(base) <= 63:
        return base
    digest = hashlib.sha256(run_name.encode()).hexdigest()[:10]
    return f"{run_name[: 63 - len(suffix) - 11].rstrip('-.')}-{digest}{suffix}"


def job_name(run_name: str) -> str:
    return child_name(run_name, "-runner")


def run_in_progress(run_name: str | None) -> str:
    """The TenantSchema's message while a run is under way; the run's reconcile and the tenant's write
    the same one, so neither overwrites the other's."""
    return f"run {run_name} in progress" if run_name else "a materialization is in progress"


def credentials_secret_name(run_name: str) -> str:
    return child_name(run_name, "-credentials")


def network_policy_name(run_name: str) -> str:
    return child_name(run_name, "-egress")


def label_value(name: str) -> str:
    """Label values are at most 63 characters: long names are shortened with a hash."""
    return child_name(name)


def run_id_for(meta: dict[str, Any]) -> str:
    """The run's id in the control tables: the gateway's label when it set one, else the object's uid."""
    label = ((meta.get("labels") or {}).get(LABEL_RUN_ID) or "").lower()
    if _UUID.match(label):
        return label
    uid = str(meta.get("uid") or "").lower()
    if not _UUID.match(uid):
        raise SpecError("the MaterializationRun has no uid; it cannot be tracked")
    return uid


# -- reading specs -----------------------------------------------------------

def plan_run(run: dict[str, Any], tenant: dict[str, Any] | None) -> RunPlan:
    """Check a MaterializationRun against its TenantSchema; SpecError says what is wrong."""
    meta, spec = run.get("metadata") or {}, run.get("spec") or {}
    tenant_name = spec.get("tenantSchema")
    if not isinstance(tenant_name, str) or not tenant_name:
        raise SpecError("spec.tenantSchema is missing: name the TenantSchema to fill")
    if tenant is None:
        raise SpecError(f"TenantSchema {tenant_name!r} does not exist in namespace {meta.get('namespace')!r}: create it first")
    tspec = tenant.get("spec") or {}
    domain = tenant_domain(tenant)
    pipeline = spec.get("pipeline") or "commcare_sync"
    allowed = tspec.get("pipelines") or []
    if allowed and pipeline not in allowed:
        raise SpecError(f"pipeline {pipeline!r} is not allowed for TenantSchema {tenant_name!r} (allowed: {', '.join(allowed)})")
    mode = spec.get("mode") or "incremental"
    if mode not in ("full", "incremental"):
        raise SpecError(f"spec.mode {mode!r} must be full or incremental")
    deadline = spec.get("activeDeadlineSeconds", 7200)
    if not isinstance(deadline, int) or isinstance(deadline, bool) or not 60 <= deadline <= 86400:
        raise SpecError("spec.activeDeadlineSeconds must be a whole number of seconds between 60 and 86400")
    base_url = ((tspec.get("commcare") or {}).get("baseUrl") or "").rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(f"TenantSchema {tenant_name!r} spec.commcare.baseUrl must be an http(s) URL")
    ref = spec.get("credentialsSecretRef")
    if ref:
        if not isinstance(ref, dict) or not ref.get("name"):
            raise SpecError("spec.credentialsSecretRef needs a name")
        source, pass_through, keys = ref["name"], True, dict(PASS_THROUGH_KEYS)
    else:
        tref = tspec.get("credentialsSecretRef") or {}
        if not tref.get("name"):
            raise SpecError(f"TenantSchema {tenant_name!r} has no spec.credentialsSecretRef.name")
        source, pass_through = tref["name"], False
        keys = {tref.get("usernameKey") or "username": "COMMCARE_USERNAME", tref.get("apiKeyKey") or "apiKey": "COMMCARE_API_KEY"}
    return RunPlan(
        namespace=meta["namespace"], name=meta["name"], uid=str(meta.get("uid") or ""), run_id=run_id_for(meta),
        tenant_schema=tenant_name, domain=domain, base_url=base_url, pipeline=pipeline, mode=mode, deadline=deadline,
        credentials_secret=source, pass_through=pass_through, credential_keys=keys,
    )


def tenant_domain(tenant: dict[str, Any]) -> str:
    spec = tenant.get("spec") or {}
    if (spec.get("provider") or "commcare") != "commcare":
        raise SpecError(f"spec.provider {spec.get('provider')!r} is not supported: use commcare")
    try:
        return validate_domain(spec.get("tenant"))
    except InvalidDomain as exc:
        raise SpecError(f"spec.tenant: {exc}") from None


def credentials_data(plan: RunPlan, source: dict[str, Any] | None) -> dict[str, str]:
    """The per-run Secret's data (base64, as the API stores it) copied from the source Secret."""
    if source is None:
        raise SpecError(f"Secret {plan.credentials_secret!r} does not exist in namespace {plan.namespace!r}")
    data = source.get("data") or {}
    out = {env: data[key] for key, env in plan.credential_keys.items() if data.get(key)}
    for key, value in (source.get("stringData") or {}).items():  # objects written by hand in tests/emulators
        if key in plan.credential_keys and value:
            out[plan.credential_keys[key]] = base64.b64encode(value.encode()).decode()
    if "COMMCARE_API_KEY" in out and "COMMCARE_USERNAME" not in out:
        raise SpecError(f"Secret {plan.credentials_secret!r} has an API key but no username key")
    if "COMMCARE_API_KEY" not in out and "COMMCARE_OAUTH_TOKEN" not in out:
        wanted = ", ".join(sorted(plan.credential_keys))
        raise SpecError(f"Secret {plan.credentials_secret!r} holds no CommCare credential (expected keys: {wanted})")
    return out


def parse_ttl(text: str | None) -> float | None:
    """A TenantSchema's spec.ttl (e.g. 24h, 90m, 7d) in seconds; None for no expiry."""
    if not text:
        return None
    match = re.fullmatch(r"([1-9][0-9]{0,4})(m|h|d)", text)
    if not match:
        raise SpecError(f"spec.ttl {text!r} must be a number followed by m, h or d, e.g. 24h")
    return int(match.group(1)) * {"m": 60, "h": 3600, "d": 86400}[match.group(2)]


# -- building children -------------------------------------------------------

def _labels(plan: RunPlan) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "data-explorer",
        "app.kubernetes.io/component": "runner",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_RUN: label_value(plan.name),
        LABEL_TENANT: label_value(plan.tenant_schema),
    }


def _secret_env(name: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def build_job(plan: RunPlan, cfg: RunnerConfig) -> dict[str, Any]:
    labels = _labels(plan)
    creds = credentials_secret_name(plan.name)
    env: list[dict[str, Any]] = [
        _secret_env("DATABASE_URL", cfg.runner_secret, "DATABASE_URL"),
        _secret_env("DATA_EXPLORER_SECRET_KEY", cfg.runner_secret, "DATA_EXPLORER_SECRET_KEY"),
        *(_secret_env(env_name, creds, env_name, optional=True) for env_name in CREDENTIAL_KEYS),
        {"name": "COMMCARE_BASE_URL", "value": plan.base_url},
        {"name": "DATA_EXPLORER_CONTROL_SCHEMA", "value": cfg.control_schema},
        {"name": "DATA_EXPLORER_ROLE_PREFIX", "value": cfg.role_prefix},
        {"name": "DATA_EXPLORER_HOME", "value": "/tmp/data-explorer"},
        {"name": "HOME", "value": "/tmp"},
    ]
    if cfg.proxy_url:
        env += [
            {"name": "HTTPS_PROXY", "value": cfg.proxy_url},
            {"name": "HTTP_PROXY", "value": cfg.proxy_url},
        ]  # only the CommCare client honours these; status patches go to the API server directly
    container = {
        "name": "runner",
        "image": cfg.image,
        "args": ["runner", "--run-id", plan.run_id, "--kubernetes-run", f"{plan.namespace}/{plan.name}"],
        "env": env,
        "resources": {"limits": {"memory": cfg.memory, "cpu": cfg.cpu}, "requests": {"memory": cfg.memory, "cpu": "100m"}},
        "securityContext": {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "work", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(plan.name), "namespace": plan.namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,  # retries are the loaders' own; a failed pod fails the run
            "activeDeadlineSeconds": plan.deadline,
            "ttlSecondsAfterFinished": cfg.ttl_seconds,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": cfg.service_account,
                    "automountServiceAccountToken": True,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True, "runAsUser": RUNNER_UID, "runAsGroup": RUNNER_UID, "fsGroup": RUNNER_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": [{"name": "work", "emptyDir": {}}],
                },
            },
        },
    }


def build_credentials_secret(plan: RunPlan, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": credentials_secret_name(plan.name), "namespace": plan.namespace, "labels": _labels(plan)},
        "data": data,
    }


def build_network_policy(plan: RunPlan, cfg: RunnerConfig) -> dict[str, Any]:
    """The run's pod: no ingress; egress only to DNS, PostgreSQL, the API server and the egress proxy."""
    egress: list[dict[str, Any]] = [
        {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
         "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
    ]
    postgres: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": cfg.postgres_port}]}
    if cfg.postgres_cidrs:
        postgres["to"] = [{"ipBlock": {"cidr": c}} for c in cfg.postgres_cidrs]
    egress.append(postgres)  # without CIDRs: the port, anywhere (set DATA_EXPLORER_POSTGRES_CIDRS to narrow it)
    # Without the API server's CIDRs there is no rule for it: status patches fail and the
    # operator carries the run's progress over from its control-table row instead.
    # A catch-all CIDR on 443 would let the runner reach any host directly, around the proxy.
    api_cidrs = [c for c in cfg.api_cidrs if not c.endswith("/0")]
    if api_cidrs:
        egress.append({"to": [{"ipBlock": {"cidr": c}} for c in api_cidrs],
                       "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]})
    if cfg.proxy_url and cfg.proxy_labels:
        port = urlsplit(cfg.proxy_url).port or PROXY_PORT_DEFAULT
        egress.append({"to": [{"podSelector": {"matchLabels": dict(cfg.proxy_labels)}}],
                       "ports": [{"protocol": "TCP", "port": port}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": network_policy_name(plan.name), "namespace": plan.namespace, "labels": _labels(plan)},
        "spec": {
            "podSelector": {"matchLabels": {LABEL_RUN: label_value(plan.name)}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": egress,
        },
    }


# -- observing ---------------------------------------------------------------

@dataclass(frozen=True)
class JobOutcome:
    state: str  # running | succeeded | failed
    reason: str = ""
    message: str = ""


def job_outcome(job: dict[str, Any]) -> JobOutcome:
    """What a Job's conditions say about its pod's end."""
    conditions = {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
    if "Complete" in conditions or "SuccessCriteriaMet" in conditions:
        return JobOutcome("succeeded")
    for kind in ("Failed", "FailureTarget"):
        if kind in conditions:
            c = conditions[kind]
            return JobOutcome("failed", c.get("reason") or "Failed", c.get("message") or "")
    return JobOutcome("running")


def is_pass_through_secret(secret: dict[str, Any] | None, run_name: str) -> bool:
    labels = ((secret or {}).get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL_PASS_THROUGH) == label_value(run_name)
