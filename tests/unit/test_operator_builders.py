"""The operator's pure builders and readings: names, specs, Job, Secret, NetworkPolicy, outcomes."""

from __future__ import annotations

import base64

import pytest

from data_explorer.control.kubernetes import pass_through_data, run_view
from data_explorer.kube.reporter import status_patch
from data_explorer.loaders.commcare.credentials import ApiKeyCredential, BearerCredential, OAuthCredential
from data_explorer.operator import builders as b
from data_explorer.pipelines.status import RunStatus

UID = "0b5f9c1e-7d1c-4f7e-9a8e-2f3c4d5e6f70"
CFG = b.RunnerConfig(image="img:1", service_account="runner-sa", runner_secret="db", ttl_seconds=600, memory="1Gi",
                     cpu="1", control_schema="data_explorer", role_prefix="de", proxy_url="http://proxy:3128",
                     proxy_labels={"app": "proxy"}, postgres_cidrs=("10.0.0.5/32",), postgres_port=5433,
                     api_cidrs=("10.96.0.1/32",))


def _tenant(**spec):
    base = {"tenant": "clinic-one", "commcare": {"baseUrl": "https://www.commcarehq.org/"},
            "credentialsSecretRef": {"name": "cc"}}
    return {"metadata": {"name": "clinic", "namespace": "ns"}, "spec": {**base, **spec}}


def _run(**spec):
    return {"metadata": {"name": "run-1", "namespace": "ns", "uid": UID},
            "spec": {"tenantSchema": "clinic", **spec}}


def test_child_names_are_deterministic_dns_labels():
    assert b.job_name("run-1") == "run-1-runner"
    long = "r" * 200
    assert b.job_name(long) == b.job_name(long) and len(b.job_name(long)) <= 63
    assert b.job_name(long) != b.job_name("r" * 199)
    assert b.label_value(long) == b.label_value(long) and len(b.label_value(long)) <= 63


def test_a_plan_reads_the_run_and_its_tenant():
    plan = b.plan_run(_run(mode="full", activeDeadlineSeconds=600), _tenant())
    assert (plan.domain, plan.base_url, plan.mode, plan.deadline, plan.run_id) == (
        "clinic-one", "https://www.commcarehq.org", "full", 600, UID)
    assert plan.credentials_secret == "cc" and not plan.pass_through
    assert plan.credential_keys == {"username": "COMMCARE_USERNAME", "apiKey": "COMMCARE_API_KEY"}
    pass_through = b.plan_run(_run(credentialsSecretRef={"name": "mine"}), _tenant())
    assert pass_through.credentials_secret == "mine" and pass_through.pass_through


def test_the_gateway_run_id_label_wins_over_the_uid():
    run = _run()
    run["metadata"]["labels"] = {"dataexplorer.io/run-id": "11111111-2222-3333-4444-555555555555"}
    assert b.plan_run(run, _tenant()).run_id == "11111111-2222-3333-4444-555555555555"
    run["metadata"]["labels"] = {"dataexplorer.io/run-id": "not-a-uuid"}
    assert b.plan_run(run, _tenant()).run_id == UID


@pytest.mark.parametrize("run, tenant, words", [
    (_run(), None, "does not exist"),
    (_run(pipeline="other"), _tenant(pipelines=["commcare_sync"]), "not allowed"),
    (_run(mode="sometimes"), _tenant(), "spec.mode"),
    (_run(activeDeadlineSeconds=True), _tenant(), "activeDeadlineSeconds"),
    (_run(activeDeadlineSeconds=10 ** 6), _tenant(), "activeDeadlineSeconds"),
    (_run(), _tenant(tenant="no spaces allowed"), "spec.tenant"),
    (_run(), _tenant(provider="kobo"), "provider"),
    (_run(), _tenant(commcare={"baseUrl": "ftp://x"}), "baseUrl"),
    (_run(), _tenant(credentialsSecretRef={}), "credentialsSecretRef"),
    ({"metadata": {"name": "r", "namespace": "ns", "uid": UID}, "spec": {}}, _tenant(), "spec.tenantSchema"),
])
def test_a_plan_refuses_what_cannot_work(run, tenant, words):
    with pytest.raises(b.SpecError) as err:
        b.plan_run(run, tenant)
    assert words in str(err.value)


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def test_credentials_are_copied_under_the_runner_names():
    plan = b.plan_run(_run(), _tenant())
    data = b.credentials_data(plan, {"data": {"username": _b64("u@x"), "apiKey": _b64("k"), "other": _b64("z")}})
    assert data == {"COMMCARE_USERNAME": _b64("u@x"), "COMMCARE_API_KEY": _b64("k")}
    with pytest.raises(b.SpecError, match="does not exist"):
        b.credentials_data(plan, None)
    with pytest.raises(b.SpecError, match="no CommCare credential"):
        b.credentials_data(plan, {"data": {"username": _b64("u@x")}})
    with pytest.raises(b.SpecError, match="no username"):
        b.credentials_data(plan, {"data": {"apiKey": _b64("k")}})
    custom = b.plan_run(_run(), _tenant(credentialsSecretRef={"name": "cc", "usernameKey": "user", "apiKeyKey": "key"}))
    assert set(b.credentials_data(custom, {"data": {"user": _b64("u"), "key": _b64("k")}})) == {"COMMCARE_USERNAME", "COMMCARE_API_KEY"}


def test_the_job_runs_the_runner_with_secrets_only_by_reference():
    plan = b.plan_run(_run(), _tenant())
    job = b.build_job(plan, CFG)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (0, 7200, 600)
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "runner-sa"
    container = pod["containers"][0]
    assert container["args"] == ["runner", "--run-id", UID, "--kubernetes-run", "ns/run-1"]
    env = {e["name"]: e for e in container["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "DATABASE_URL"}
    assert env["COMMCARE_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "run-1-credentials", "key": "COMMCARE_API_KEY", "optional": True}
    assert all("valueFrom" in env[k] for k in ("DATABASE_URL", "DATA_EXPLORER_SECRET_KEY", *b.CREDENTIAL_KEYS))
    assert env["COMMCARE_BASE_URL"]["value"] == "https://www.commcarehq.org"
    assert env["HTTPS_PROXY"]["value"] == "http://proxy:3128"
    assert job["metadata"]["labels"]["dataexplorer.io/run"] == "run-1"
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    without_proxy = b.build_job(plan, b.RunnerConfig(**{**CFG.__dict__, "proxy_url": None}))
    assert "HTTPS_PROXY" not in {e["name"] for e in without_proxy["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_network_policy_allows_only_dns_postgres_the_api_and_the_proxy():
    plan = b.plan_run(_run(), _tenant())
    policy = b.build_network_policy(plan, CFG)["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["ingress"] == []
    ports = [sorted(p["port"] for p in rule["ports"]) for rule in policy["egress"]]
    assert ports == [[53, 53], [5433], [443, 6443], [3128]]
    loose = b.build_network_policy(plan, b.RunnerConfig(**{**CFG.__dict__, "postgres_cidrs": (), "api_cidrs": ("0.0.0.0/0",)}))
    rules = loose["spec"]["egress"]
    assert {"ports": [{"protocol": "TCP", "port": 5433}]} in rules  # PostgreSQL's port, anywhere
    assert not any(p["port"] == 443 for rule in rules for p in rule["ports"])  # never 443 everywhere


@pytest.mark.parametrize("conditions, outcome", [
    ([], b.JobOutcome("running")),
    ([{"type": "Complete", "status": "True"}], b.JobOutcome("succeeded")),
    ([{"type": "Complete", "status": "False"}], b.JobOutcome("running")),
    ([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "m"}], b.JobOutcome("failed", "DeadlineExceeded", "m")),
    ([{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"}], b.JobOutcome("failed", "BackoffLimitExceeded", "")),
])
def test_job_conditions_map_to_an_outcome(conditions, outcome):
    assert b.job_outcome({"status": {"conditions": conditions}}) == outcome


@pytest.mark.parametrize("text, seconds", [("90m", 5400), ("24h", 86400), ("7d", 604800), ("", None), (None, None)])
def test_ttl(text, seconds):
    assert b.parse_ttl(text) == seconds


def test_a_bad_ttl_is_refused():
    with pytest.raises(b.SpecError, match="spec.ttl"):
        b.parse_ttl("1w")


def test_status_patch_and_run_view_carry_the_run_both_ways():
    status = RunStatus(UID, "clinic-one", "commcare_sync", "full")
    status.enter("Discovering", "reading apps")
    status.phases["load"]["cases"] = {"state": "done", "rows": 12}
    status.phases["load"]["forms"] = {"state": "running", "rows": 3}
    patch = status_patch(status)["status"]
    assert patch["phase"] == "Discovering" and patch["rows"] == 15 and patch["startedAt"].endswith("Z")
    view = run_view({"metadata": {"name": "r", "labels": {"dataexplorer.io/run-id": UID}, "creationTimestamp": "2026-01-01T00:00:00Z"},
                     "spec": {"mode": "full"}, "status": patch}, "clinic-one")
    assert (view.run_id, view.phase, view.mode, view.domain) == (UID, "Discovering", "full", "clinic-one")
    assert view.started_at is not None and not view.finished


def test_pass_through_data_never_carries_a_refresh_token():
    assert set(pass_through_data(ApiKeyCredential("u", "k"))) == {"username", "apiKey"}
    assert set(pass_through_data(BearerCredential("t", None, "u"))) == {"oauthToken", "username"}
    data = pass_through_data(OAuthCredential("access", "refresh-secret"))
    assert set(data) == {"oauthToken"} and base64.b64decode(data["oauthToken"]) == b"access"
