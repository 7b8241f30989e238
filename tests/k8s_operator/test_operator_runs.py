"""MaterializationRun: one Job per run with its Secret and NetworkPolicy; Job conditions to
phases; cancel; a Job deleted by someone else; deadlines; an operator restarted mid-run."""

from __future__ import annotations

import asyncio
import base64

import pytest

from data_explorer.operator import builders
from data_explorer.simulator import RunningSimulator, demo_config
from net_helpers import free_port as _free_port

from .conftest import JOBS, MATERIALIZATION_RUNS, NETWORK_POLICIES, SECRETS, TENANT_SCHEMAS, credentials_body, run_body, tenant_body
from .kubelet import run_job, seed_runnable_tenant, write_kubeconfig
from .operator_helpers import new_domain, run_row

pytestmark = pytest.mark.asyncio


def _phase(*phases):
    return lambda obj: obj is not None and (obj.get("status") or {}).get("phase") in phases


async def _tenant(cluster, name="clinic", domain=None, base_url="https://www.commcarehq.org", **spec):
    domain = domain or new_domain()
    await cluster.create(SECRETS, credentials_body(f"{name}-commcare"))
    body = tenant_body(name, domain, **spec)
    body["spec"]["commcare"]["baseUrl"] = base_url
    await cluster.create(TENANT_SCHEMAS, body)
    await cluster.wait_for(TENANT_SCHEMAS, name, _phase("Active"))
    return domain


async def _started_run(cluster, name="run-1", tenant="clinic", **spec):
    await cluster.create(MATERIALIZATION_RUNS, run_body(name, tenant, **spec))
    return await cluster.wait_for(MATERIALIZATION_RUNS, name, lambda o: o and (o.get("status") or {}).get("jobName"),
                                  what=f"{name} to get its Job")


async def _set_job_condition(cluster, run_name, kind, reason="", message=""):
    condition = {"type": kind, "status": "True", "reason": reason, "message": message,
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}
    await cluster.patch(JOBS, builders.job_name(run_name), {"status": {"conditions": [condition]}}, status=True)


async def test_the_tenant_stays_materializing_while_its_run_waits_for_its_runner(cluster, operator):
    """The tenant's periodic check (every 0.5 s here) reads the control tables, where the tenant is still
    Active until the runner starts: a run recorded there keeps the tenant Materializing meanwhile."""
    await _tenant(cluster)
    await _started_run(cluster)
    await cluster.wait_for(TENANT_SCHEMAS, "clinic", _phase("Materializing"))
    seen = set()
    for _ in range(20):  # 2 s: several of the tenant's checks
        seen.add(((await cluster.get(TENANT_SCHEMAS, "clinic")).get("status") or {}).get("phase"))
        await asyncio.sleep(0.1)
    assert seen == {"Materializing"}, seen


async def test_a_run_creates_exactly_its_job_secret_and_network_policy(cluster, operator, conn, operator_settings):
    domain = await _tenant(cluster)
    run = await _started_run(cluster)
    uid = run["metadata"]["uid"]
    jobs, secrets, policies = (await cluster.list(JOBS), await cluster.list(SECRETS), await cluster.list(NETWORK_POLICIES))
    assert [j["metadata"]["name"] for j in jobs] == ["run-1-runner"]
    assert sorted(s["metadata"]["name"] for s in secrets) == ["clinic-commcare", "run-1-credentials"]
    assert [p["metadata"]["name"] for p in policies] == ["run-1-egress"]
    for child in (jobs[0], policies[0], next(s for s in secrets if s["metadata"]["name"] == "run-1-credentials")):
        owner = child["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("MaterializationRun", "run-1", uid, True)

    job = jobs[0]["spec"]
    pod = job["template"]["spec"]
    assert (job["backoffLimit"], job["activeDeadlineSeconds"], job["ttlSecondsAfterFinished"]) == (0, 3600, 3600)
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "data-explorer-runner"
    container = pod["containers"][0]
    assert container["image"] == "registry.example/data-explorer:0.1.0"
    assert container["args"] == ["runner", "--run-id", uid, "--kubernetes-run", "tenants/run-1"]
    env = {e["name"]: e for e in container["env"]}
    for secret_name in ("DATABASE_URL", "DATA_EXPLORER_SECRET_KEY", "COMMCARE_USERNAME", "COMMCARE_API_KEY", "COMMCARE_OAUTH_TOKEN"):
        assert "value" not in env[secret_name] and "secretKeyRef" in env[secret_name]["valueFrom"], secret_name
    assert env["COMMCARE_USERNAME"]["valueFrom"]["secretKeyRef"]["name"] == "run-1-credentials"
    assert env["HTTPS_PROXY"]["value"] == "http://data-explorer-egress-proxy:3128"
    assert container["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"]

    copied = next(s for s in secrets if s["metadata"]["name"] == "run-1-credentials")["data"]
    assert base64.b64decode(copied["COMMCARE_USERNAME"]).decode() == "user@example.org"
    assert set(copied) == {"COMMCARE_USERNAME", "COMMCARE_API_KEY"}

    policy = policies[0]["spec"]
    assert policy["podSelector"] == {"matchLabels": {"dataexplorer.io/run": "run-1"}}
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["ingress"] == []
    allowed = [(tuple(sorted(str(p["port"]) for p in rule["ports"])), rule["to"]) for rule in policy["egress"]]
    assert allowed == [
        (("53", "53"), [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]),
        (("5432",), [{"ipBlock": {"cidr": "10.20.0.0/24"}}]),
        (("443", "6443"), [{"ipBlock": {"cidr": "10.96.0.1/32"}}]),
        (("3128",), [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "egress-proxy", "app.kubernetes.io/instance": "dx"}}}]),
    ]
    assert run["status"]["phase"] == "Pending" and run["status"]["runId"] == uid
    row = run_row(conn, operator_settings.control_schema, uid)
    assert row["phase"] == "Pending" and row["domain"] == domain
    tenant = await cluster.wait_for(TENANT_SCHEMAS, "clinic", _phase("Materializing"))
    assert "run-1" in tenant["status"]["message"]
    await asyncio.sleep(1.0)  # more passes of the periodic check create nothing more
    assert len(await cluster.list(JOBS)) == 1


async def test_job_success_ends_succeeded_with_row_counts_through_the_real_runner(
        cluster, operator, conn, operator_settings, tmp_path):
    from data_explorer.egress_proxy import parse_allow_list, serve

    domain = new_domain()
    sim = RunningSimulator(demo_config(cases=120, forms=60, users=5, domains=(domain,)))
    sim.start()
    sim_port = int(sim.base_url.rsplit(":", 1)[1].split("/")[0])
    stop = asyncio.Event()
    ready = asyncio.Event()
    proxy_port = _free_port()
    proxy = asyncio.create_task(serve("127.0.0.1", proxy_port, parse_allow_list("127.0.0.1", ports=(sim_port,)), allow_private=True, ready=ready, stop=stop))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        operator.ctx.runner = builders.RunnerConfig(**{**operator.ctx.runner.__dict__, "proxy_url": f"http://127.0.0.1:{proxy_port}"})
        await seed_runnable_tenant(cluster, operator_settings, domain, sim.base_url)
        await _started_run(cluster)
        job = await cluster.get(JOBS, "run-1-runner")
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", str(cluster.kmock.url).rstrip("/"))
        done = await asyncio.to_thread(run_job, cluster.api, job, kubeconfig=kubeconfig, home=tmp_path / "pod")
        assert done.returncode == 0, done.stdout + done.stderr
        reported = await cluster.get(MATERIALIZATION_RUNS, "run-1")  # the runner's own patches, before the Job ends
        assert reported["status"]["phase"] == "Succeeded" and reported["status"]["progress"]["current"] == 100
        await _set_job_condition(cluster, "run-1", "Complete")  # what the Job controller would do
        run = await cluster.wait_for(MATERIALIZATION_RUNS, "run-1", lambda o: o and o["status"].get("secretsRemovedAt"))
        expected = sim.state()["domains"][domain]
        load = run["status"]["phases"]["load"]
        users = expected["users"] + expected["users_archived"] + expected["web_users"]  # every list the loader reads
        assert (load["cases"]["rows"], load["forms"]["rows"], load["users"]["rows"]) == (expected["cases"], expected["forms"], users)
        assert run["status"]["rows"] == sum(entry["rows"] for entry in load.values())
        assert run["status"]["completedAt"].endswith("Z") and not run["status"].get("error")
        assert await cluster.get(SECRETS, "run-1-credentials") is None  # no secret outlives its run
        tenant = await cluster.wait_for(TENANT_SCHEMAS, "clinic", _phase("Active"))
        assert tenant["status"]["lastRun"] == "run-1" and tenant["status"]["lastMaterializedAt"]
        reasons = [e["reason"] for e in await cluster.events_for("run-1")]
        assert reasons[0] == "RunPending" and reasons[-1] == "RunSucceeded" and len(set(reasons)) == len(reasons), reasons
    finally:
        stop.set()
        await asyncio.wait_for(proxy, 5)
        sim.stop()


@pytest.mark.parametrize("reason, code", [("BackoffLimitExceeded", "RUNNER_FAILED"), ("DeadlineExceeded", "DeadlineExceeded")])
async def test_a_failed_job_ends_the_run_failed_with_its_reason(cluster, operator, conn, operator_settings, reason, code):
    await _tenant(cluster)
    run = await _started_run(cluster)
    await _set_job_condition(cluster, "run-1", "Failed", reason, "Job has reached the specified backoff limit")
    run = await cluster.wait_for(MATERIALIZATION_RUNS, "run-1", _phase("Failed"))
    assert run["status"]["error"]["code"] == code
    assert run_row(conn, operator_settings.control_schema, run["metadata"]["uid"])["phase"] == "Failed"
    reasons = [e["reason"] for e in await cluster.events_for("run-1")]
    assert "RunFailed" in reasons


async def test_cancel_deletes_the_job_and_ends_cancelled(cluster, operator, conn, operator_settings):
    await _tenant(cluster)
    run = await _started_run(cluster)
    await cluster.patch(MATERIALIZATION_RUNS, "run-1", {"spec": {"cancel": True}})
    run = await cluster.wait_for(MATERIALIZATION_RUNS, "run-1", _phase("Cancelled"))
    assert run["status"]["error"]["code"] == "CANCELLED"
    assert await cluster.get(JOBS, "run-1-runner") is None
    assert run_row(conn, operator_settings.control_schema, run["metadata"]["uid"])["phase"] == "Cancelled"
    reasons = [e["reason"] for e in await cluster.events_for("run-1")]
    assert "JobDeleted" in reasons and "RunCancelled" in reasons
    await cluster.wait_for(TENANT_SCHEMAS, "clinic", _phase("Active"))


async def test_a_job_deleted_by_someone_else_fails_the_run_with_that_reason(cluster, operator, conn, operator_settings):
    await _tenant(cluster)
    run = await _started_run(cluster)
    await cluster.delete(JOBS, "run-1-runner")
    run = await cluster.wait_for(MATERIALIZATION_RUNS, "run-1", _phase("Failed"))
    assert run["status"]["error"]["code"] == "JobDeleted" and "deleted" in run["status"]["error"]["message"]
    assert len(await cluster.list(JOBS)) == 0  # not recreated behind the user's back


async def test_an_operator_restarted_mid_run_picks_up_where_it_was(cluster, operator, conn, operator_settings):
    await _tenant(cluster)
    run = await _started_run(cluster)
    await operator.stop()
    await _set_job_condition(cluster, "run-1", "Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
    await operator.start()
    run = await cluster.wait_for(MATERIALIZATION_RUNS, "run-1", _phase("Failed"))
    assert run["status"]["error"]["code"] == "DeadlineExceeded"
    assert [j["metadata"]["name"] for j in await cluster.list(JOBS)] == ["run-1-runner"]


async def test_a_second_run_of_a_tenant_waits_for_the_first(cluster, operator):
    await _tenant(cluster)
    await _started_run(cluster, "run-1")
    await cluster.create(MATERIALIZATION_RUNS, run_body("run-2", "clinic"))
    waiting = await cluster.wait_for(MATERIALIZATION_RUNS, "run-2",
                                     lambda o: o and "waiting" in ((o.get("status") or {}).get("progress") or {}).get("message", ""))
    assert waiting["status"]["phase"] == "Pending" and await cluster.get(JOBS, "run-2-runner") is None
    await cluster.patch(MATERIALIZATION_RUNS, "run-1", {"spec": {"cancel": True}})
    await cluster.wait_for(MATERIALIZATION_RUNS, "run-2", lambda o: o and (o.get("status") or {}).get("jobName"), timeout=30)


@pytest.mark.parametrize("change, code, words", [
    ({"tenantSchema": "nobody"}, "INVALID_SPEC", "does not exist"),
    ({"pipeline": "other_sync"}, "INVALID_SPEC", "not allowed"),
    ({"credentialsSecretRef": {"name": "missing"}}, "CREDENTIALS_MISSING", "does not exist"),
    ({"activeDeadlineSeconds": 5}, "INVALID_SPEC", "activeDeadlineSeconds"),
])
async def test_a_run_that_cannot_work_fails_with_a_clear_reason(cluster, operator, change, code, words):
    await _tenant(cluster, pipelines=["commcare_sync"])
    await cluster.create(MATERIALIZATION_RUNS, run_body("bad", "clinic", **change))
    run = await cluster.wait_for(MATERIALIZATION_RUNS, "bad", _phase("Failed"))
    assert run["status"]["error"]["code"] == code and words in run["status"]["error"]["message"]
    assert await cluster.get(JOBS, "bad-runner") is None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()

