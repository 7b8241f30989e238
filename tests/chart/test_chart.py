"""The Helm chart, rendered and linted by the real Helm engine (helm-python-sdk), offline.

Every rendered manifest is validated strictly with kubernetes-validate for several
Kubernetes versions; then the security-relevant content is asserted.
"""

from __future__ import annotations

import copy
import functools
import tarfile
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from chart_helpers import CHART_DIR, CRD_DIR, KUBE_VERSIONS, UNVALIDATED_KINDS, describe, load_yaml_documents, validate_builtin

RELEASE, NAMESPACE = "de", "analytics"
SECRET = "de-database"
REQUIRED = {"database": {"existingSecret": SECRET, "cidrs": ["10.20.0.0/24", "10.30.0.5/32"]}}
HOSTS = ["www.commcarehq.org", "india.commcarehq.org", "eu.commcarehq.org"]


def merged(*overrides: dict) -> dict:
    def merge(into: dict, extra: dict) -> dict:
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = copy.deepcopy(value)
        return into

    out: dict = {}
    for extra in (REQUIRED, *overrides):
        merge(out, extra)
    return out


VALUE_SETS: dict[str, dict] = {
    "defaults": merged(),
    "ingress": merged({"gateway": {"ingress": {
        "enabled": True, "className": "nginx", "host": "mcp.example.org",
        "annotations": {"nginx.ingress.kubernetes.io/affinity": "cookie"},
        "tls": {"enabled": True, "secretName": "mcp-tls"},
    }, "allowedIngressFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]}}),
    "no-network-policies": merged({"networkPolicies": {"enabled": False}, "database": {"cidrs": []}}),
    "cilium-without-proxy": merged({"networkPolicies": {"cilium": {"enabled": True}}, "egressProxy": {"enabled": False}}),
    "everything-set": merged({
        "image": {"repository": "registry.example:5000/team/data-explorer", "tag": "0.1.0",
                  "digest": "sha256:" + "ab" * 32, "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "operator": {"extraEnv": [{"name": "DATA_EXPLORER_ROLE_PREFIX", "value": "dx"}], "liveness": {"enabled": False},
                     "nodeSelector": {"pool": "system"}, "tolerations": [{"key": "system", "operator": "Exists"}]},
        "gateway": {"replicas": 2, "extraEnv": [{"name": "DATA_EXPLORER_QUERY_MAX_ROWS", "value": "200"}],
                    "podAnnotations": {"prometheus.io/scrape": "false"}, "service": {"type": "LoadBalancer", "port": 443}},
        "egressProxy": {"ports": [443, 80], "allowPrivateAddresses": True, "replicas": 2,
                        "allowedHosts": ["commcare.example.org", "*.commcarehq.org"]},
        "kubernetesApi": {"cidrs": ["172.18.0.2/32"], "ports": [6443]},
        "runner": {"ttlSecondsAfterFinished": 600, "memory": "2Gi", "cpu": "500m"},
        "database": {"port": 6432},
        "networkPolicies": {"cilium": {"enabled": True}},
    }),
}


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@functools.lru_cache(maxsize=None)
def _render(name: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    with helm.Chart.load(CHART_DIR) as loaded:
        files = loaded.render(VALUE_SETS[name], name=RELEASE, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(files.items()):
        if path.endswith(".txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return files, objects


def objects(name: str = "defaults") -> list[dict[str, Any]]:
    return _render(name)[1]


def one(name: str, kind: str, component: str) -> dict[str, Any]:
    found = [
        o for o in objects(name)
        if o["kind"] == kind and o["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"expected one {kind} of {component} in {name}, found {len(found)}"
    return found[0]


def kinds(name: str) -> list[str]:
    return sorted(o["kind"] for o in objects(name))


def container(deployment: dict) -> dict:
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    return c


def env_of(deployment: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment)["env"]}


# --- CRDs: one source, included by symlink ---------------------------------------------


def _crds_from_disk() -> dict[str, dict]:
    return {p.name: load_yaml_documents(p)[0] for p in sorted(CRD_DIR.glob("*.yaml"))}


def test_chart_crds_are_a_symlink_to_deploy_crds():
    link = CHART_DIR / "crds"
    assert link.is_symlink(), "the chart must include deploy/crds, not a copy"
    assert link.resolve() == CRD_DIR.resolve()


def test_engine_loads_the_crds_through_the_symlink(chart):
    loaded = {c["name"].removeprefix("crds/"): yaml.safe_load(c["data"]) for c in chart.crds}
    assert loaded == _crds_from_disk()


def test_packaged_chart_carries_the_crds_as_files(tmp_path):
    archive = helm.package(CHART_DIR, destination=tmp_path)
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers() if "/crds/" in m.name}
        assert sorted(members) == [f"data-explorer/crds/{name}" for name in _crds_from_disk()]
        assert all(m.isfile() for m in members.values()), "a packaged chart must hold the files, not links"
    with helm.Chart.load(archive) as packaged:
        assert {c["name"].removeprefix("crds/"): yaml.safe_load(c["data"]) for c in packaged.crds} == _crds_from_disk()


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_crds_as_the_engine_installs_them_are_valid(chart, version):
    for crd in chart.crds:
        obj = yaml.safe_load(crd["data"])
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(describe(exc, obj))


# --- lint and render ---------------------------------------------------------------


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_lint_is_clean(values, version):
    report = helm.lint(CHART_DIR, VALUE_SETS[values], strict=True, namespace=NAMESPACE, kube_version=f"v{version}")
    assert report["errors"] == []
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == []


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_rendered_manifests_are_valid_kubernetes(values):
    checked = 0
    for obj in objects(values):
        if obj["kind"] in UNVALIDATED_KINDS:
            continue  # see UNVALIDATED_KINDS for why
        try:
            validate_builtin(obj)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(describe(exc, obj))
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(exc.message)
        checked += 1
    assert checked >= 15


def test_default_render_has_every_piece():
    assert kinds("defaults") == sorted(
        ["Deployment"] * 3
        + ["NetworkPolicy"] * 4
        + ["Role"] * 3 + ["RoleBinding"] * 3
        + ["Service"] * 2
        + ["ServiceAccount"] * 4
    )


def test_every_object_is_in_the_release_namespace_and_labelled():
    for values in VALUE_SETS:
        for obj in objects(values):
            meta = obj["metadata"]
            if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
                assert meta["namespace"] == NAMESPACE, obj["kind"]
            labels = meta["labels"]
            assert labels["app.kubernetes.io/name"] == "data-explorer"
            assert labels["app.kubernetes.io/instance"] == RELEASE
            assert labels["app.kubernetes.io/version"] == "0.1.0"
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            assert labels["app.kubernetes.io/part-of"] == "data-explorer"
            assert labels["app.kubernetes.io/component"] in ("operator", "gateway", "runner", "egress-proxy")


# --- values that must fail -------------------------------------------------------------

BAD_VALUES = [
    ("misspelt top-level key", {"databse": {"existingSecret": "x"}}, "databse"),
    ("unknown nested key", {"gateway": {"ingres": {"enabled": True}}}, "ingres"),
    ("wrong type", {"gateway": {"ingress": {"enabled": "yes"}}}, "/gateway/ingress/enabled"),
    ("bad pull policy", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ("bad digest", {"image": {"digest": "latest"}}, "/image/digest"),
    ("allowed host with a scheme", {"egressProxy": {"allowedHosts": ["https://www.commcarehq.org"]}}, "/egressProxy/allowedHosts/0"),
    ("allowed host with a port", {"egressProxy": {"allowedHosts": ["www.commcarehq.org:443"]}}, "/egressProxy/allowedHosts/0"),
    ("removed key", {"egressProxy": {"allowPlainHttp": True}}, "allowPlainHttp"),
    ("not a CIDR", {"database": {"cidrs": ["postgres.internal"]}}, "/database/cidrs/0"),
    ("port out of range", {"database": {"port": 70000}}, "/database/port"),
    ("limits required", {"gateway": {"resources": {"limits": None, "requests": {"cpu": "1"}}}}, "/gateway/resources"),
]


@pytest.mark.parametrize(("overrides", "named"), [c[1:] for c in BAD_VALUES], ids=[c[0] for c in BAD_VALUES])
def test_values_outside_the_schema_fail(chart, overrides, named):
    values = merged(overrides)
    with pytest.raises(helm.HelmValuesError) as caught:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert named in str(caught.value)
    report = helm.lint(CHART_DIR, values, namespace=NAMESPACE)
    assert any(named in error for error in report["errors"])


def test_missing_existing_secret_fails(chart):
    for values in ({}, {"database": {"cidrs": ["10.0.0.0/8"]}}):
        with pytest.raises(helm.HelmRenderError) as caught:
            chart.render(values, name=RELEASE, namespace=NAMESPACE)
        assert "database.existingSecret is required" in str(caught.value)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"database": {"cidrs": []}}, "database.cidrs is required while networkPolicies.enabled"),
    ({"egressProxy": {"enabled": False}}, "runners could not reach CommCare"),
    ({"gateway": {"ingress": {"enabled": True}}}, "gateway.ingress.host is required"),
    ({"gateway": {"ingress": {"enabled": True, "host": "a.example", "tls": {"enabled": True}}}}, "gateway.ingress.tls.secretName"),
])
def test_inconsistent_values_fail_with_a_reason(chart, overrides, message):
    with pytest.raises(helm.HelmRenderError) as caught:
        chart.render(merged(overrides), name=RELEASE, namespace=NAMESPACE)
    assert message in str(caught.value)


# --- RBAC --------------------------------------------------------------------------------


def _rules(role: dict) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _grants(*triples: tuple[str, list[str], list[str]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for g, resources, verbs in triples for r in resources for v in verbs}


def test_runner_role_grants_only_patch_on_run_status():
    role = one("defaults", "Role", "runner")
    assert role["rules"] == [{"apiGroups": ["dataexplorer.io"], "resources": ["materializationruns/status"], "verbs": ["patch"]}]
    sa = one("defaults", "ServiceAccount", "runner")
    assert sa["automountServiceAccountToken"] is True
    binding = one("defaults", "RoleBinding", "runner")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}]


def test_operator_role_is_namespaced_least_privilege():
    role = one("defaults", "Role", "operator")
    assert _rules(role) == _grants(
        ("dataexplorer.io", ["tenantschemas", "materializationruns"], ["get", "list", "watch", "patch"]),
        ("dataexplorer.io", ["tenantschemas/status", "materializationruns/status"], ["patch"]),
        ("dataexplorer.io", ["materializationruns/finalizers"], ["update"]),
        ("batch", ["jobs"], ["create", "get", "list", "watch", "delete"]),
        ("", ["secrets"], ["create", "get", "list", "watch", "delete", "patch"]),
        ("networking.k8s.io", ["networkpolicies"], ["create", "get", "list", "watch", "delete", "patch"]),
        ("", ["events"], ["create"]),
        ("events.k8s.io", ["events"], ["create"]),
    )
    assert not [o for o in objects("defaults") if o["kind"].startswith("Cluster")], "no cluster-wide grants"


def test_gateway_role():
    role = one("defaults", "Role", "gateway")
    assert _rules(role) == _grants(
        ("dataexplorer.io", ["materializationruns"], ["create", "get", "list", "watch", "patch"]),
        ("dataexplorer.io", ["tenantschemas"], ["get", "list", "watch"]),
        ("", ["secrets"], ["create", "delete", "patch"]),
        ("dataexplorer.io", ["materializationruns/finalizers"], ["update"]),
    )
    assert not {verb for group, resource, verb in _rules(role) if resource == "secrets"} & {"get", "list", "watch"}


def test_no_wildcards_anywhere():
    for obj in objects("everything-set"):
        for rule in obj.get("rules", []):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], obj["metadata"]["name"]


# --- secrets and pod hardening ---------------------------------------------------------


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_no_secret_material_is_rendered(values):
    files, rendered = _render(values)
    assert "Secret" not in [o["kind"] for o in rendered]
    text = "\n".join(files.values())
    for needle in ("postgresql://", "postgres://", "password=", "stringData"):
        assert needle not in text
    for deployment in (o for o in rendered if o["kind"] == "Deployment"):
        for var in container(deployment).get("env", []):
            if var["name"] in ("DATABASE_URL", "DATA_EXPLORER_SECRET_KEY"):
                assert "value" not in var
                assert var["valueFrom"] == {"secretKeyRef": {"name": SECRET, "key": var["name"]}}


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_every_deployment_is_hardened(values):
    deployments = [o for o in objects(values) if o["kind"] == "Deployment"]
    assert deployments
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), deployment["metadata"]["name"]
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
            assert c["command"] == ["data-explorer"]
        assert {"name": "tmp", "emptyDir": pod["volumes"][0]["emptyDir"]} in pod["volumes"]


# --- the three Deployments ---------------------------------------------------------


def test_operator_deployment_and_env():
    operator = one("defaults", "Deployment", "operator")
    assert operator["spec"]["replicas"] == 1
    assert container(operator)["args"] == ["operator", "--liveness", "http://0.0.0.0:8080/healthz"]
    assert container(operator)["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container(operator)["ports"] == [{"name": "health", "containerPort": 8080, "protocol": "TCP"}]
    without = container(one("everything-set", "Deployment", "operator"))
    assert without["args"] == ["operator"] and "livenessProbe" not in without
    env = env_of(operator)
    proxy = one("defaults", "Deployment", "egress-proxy")
    proxy_service = one("defaults", "Service", "egress-proxy")
    assert env["DATA_EXPLORER_CONTROL_PLANE"] == "kubernetes"
    assert env["DATA_EXPLORER_NAMESPACE"] == NAMESPACE
    assert env["DATA_EXPLORER_RUNNER_IMAGE"] == container(operator)["image"] == "data-explorer:0.1.0"
    assert env["DATA_EXPLORER_RUNNER_SERVICE_ACCOUNT"] == one("defaults", "ServiceAccount", "runner")["metadata"]["name"]
    assert env["DATA_EXPLORER_RUNNER_SECRET"] == SECRET
    assert env["DATA_EXPLORER_RUNNER_TTL_SECONDS"] == "3600"
    assert (env["DATA_EXPLORER_RUNNER_MEMORY"], env["DATA_EXPLORER_RUNNER_CPU"]) == ("1Gi", "1")
    assert env["DATA_EXPLORER_EGRESS_PROXY_URL"] == f"http://{proxy_service['metadata']['name']}.{NAMESPACE}.svc:3128"
    labels = dict(pair.split("=", 1) for pair in env["DATA_EXPLORER_EGRESS_PROXY_LABELS"].split(","))
    assert labels == proxy["spec"]["selector"]["matchLabels"] == proxy_service["spec"]["selector"]
    assert env["DATA_EXPLORER_POSTGRES_CIDRS"] == "10.20.0.0/24,10.30.0.5/32"
    assert env["DATA_EXPLORER_POSTGRES_PORT"] == "5432"
    assert env["DATA_EXPLORER_KUBERNETES_API_CIDRS"] == "0.0.0.0/0"
    assert env_of(one("everything-set", "Deployment", "operator"))["DATA_EXPLORER_KUBERNETES_API_CIDRS"] == "172.18.0.2/32"


def test_commands_parse_with_the_cli():
    """Each Deployment's command line is accepted by `data-explorer`'s own parser."""
    from data_explorer.cli import build_parser

    expected = {"operator": "operator", "gateway": "serve", "egress-proxy": "egress-proxy"}
    for values in ("defaults", "everything-set"):
        for deployment in (o for o in objects(values) if o["kind"] == "Deployment"):
            args = container(deployment)["args"]
            parsed = build_parser().parse_args(args)
            assert parsed.command == expected[deployment["metadata"]["labels"]["app.kubernetes.io/component"]]


def test_operator_env_is_accepted_by_the_settings_table():
    """The literal env values parse with data_explorer.config, as the operator will read them."""
    from data_explorer.config import SETTINGS, load_settings

    known = {s.env for s in SETTINGS}
    for values in VALUE_SETS:
        for deployment in (o for o in objects(values) if o["kind"] == "Deployment"):
            env = {e["name"]: e["value"] for e in container(deployment).get("env", []) if "value" in e}
            assert set(env) <= known, set(env) - known
            env["DATA_EXPLORER_HOME"] = "/tmp/data-explorer"
            env["DATA_EXPLORER_CONFIG"] = "/dev/null"
            settings = load_settings(env)
            for name in env:
                if name in known and name != "DATA_EXPLORER_HOME":
                    assert settings.sources[name] == "the environment", name


def test_operator_without_proxy_gets_no_proxy_env():
    env = env_of(one("cilium-without-proxy", "Deployment", "operator"))
    assert "DATA_EXPLORER_EGRESS_PROXY_URL" not in env
    assert "DATA_EXPLORER_EGRESS_PROXY_LABELS" not in env
    assert "egress-proxy" not in {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objects("cilium-without-proxy")}


def test_image_by_digest_and_extras():
    operator = one("everything-set", "Deployment", "operator")
    image = "registry.example:5000/team/data-explorer@sha256:" + "ab" * 32
    assert container(operator)["image"] == image == env_of(operator)["DATA_EXPLORER_RUNNER_IMAGE"]
    assert container(operator)["imagePullPolicy"] == "Always"
    assert operator["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    # runner pods are built by the operator: they get the pull secret through their ServiceAccount
    assert one("everything-set", "ServiceAccount", "runner")["imagePullSecrets"] == [{"name": "regcred"}]
    assert "imagePullSecrets" not in one("defaults", "ServiceAccount", "runner")
    assert operator["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "system"}
    assert env_of(operator)["DATA_EXPLORER_ROLE_PREFIX"] == "dx"
    assert env_of(operator)["DATA_EXPLORER_RUNNER_CPU"] == "500m"
    gateway = one("everything-set", "Deployment", "gateway")
    assert gateway["spec"]["replicas"] == 2
    assert env_of(gateway)["DATA_EXPLORER_QUERY_MAX_ROWS"] == "200"
    assert one("everything-set", "Service", "gateway")["spec"]["ports"][0]["port"] == 443


def test_gateway_deployment_and_service():
    gateway = one("defaults", "Deployment", "gateway")
    c = container(gateway)
    assert c["args"] == ["serve", "--transport", "http", "--host", "0.0.0.0", "--port", "8000"]
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    env = env_of(gateway)
    assert env["DATA_EXPLORER_CONTROL_PLANE"] == "kubernetes"
    assert env["COMMCARE_BASE_URL"] == "https://www.commcarehq.org"
    assert env["DATA_EXPLORER_NAMESPACE"] == NAMESPACE
    assert gateway["spec"]["template"]["spec"]["serviceAccountName"] == one("defaults", "ServiceAccount", "gateway")["metadata"]["name"]
    service = one("defaults", "Service", "gateway")
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"] == gateway["spec"]["selector"]["matchLabels"]
    assert "Ingress" not in kinds("defaults")


def test_ingress_when_enabled():
    ingress = one("ingress", "Ingress", "gateway")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["mcp.example.org"], "secretName": "mcp-tls"}]
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "mcp.example.org"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": one("ingress", "Service", "gateway")["metadata"]["name"], "port": {"name": "http"}}
    assert ingress["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/affinity": "cookie"}


def test_egress_proxy():
    proxy = one("defaults", "Deployment", "egress-proxy")
    assert container(proxy)["args"] == ["egress-proxy", "--port", "3128", "--allow", ",".join(HOSTS), "--ports", "443"]
    assert proxy["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert "env" not in container(proxy), "the proxy needs no database and no secrets"
    service = one("defaults", "Service", "egress-proxy")
    assert service["spec"]["ports"] == [{"name": "proxy", "port": 3128, "targetPort": "proxy", "protocol": "TCP"}]
    custom = one("everything-set", "Deployment", "egress-proxy")
    assert container(custom)["args"][4:] == ["commcare.example.org,*.commcarehq.org", "--ports", "443,80", "--allow-private"]


def test_proxy_arguments_parse_with_the_proxy_itself():
    """The rendered command line is accepted by `data-explorer egress-proxy`'s own parser."""
    from data_explorer.egress_proxy import build_parser

    for values in ("defaults", "everything-set"):
        args = container(one(values, "Deployment", "egress-proxy"))["args"]
        parsed = build_parser().parse_args(args[1:])
        assert parsed.port == 3128


# --- NetworkPolicies -----------------------------------------------------------------------

DNS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
RUNNER_SELECTOR = {"matchLabels": {"app.kubernetes.io/component": "runner"}}


def _postgres_rule(values: str = "defaults") -> dict:
    cidrs = VALUE_SETS[values]["database"]["cidrs"]
    port = VALUE_SETS[values]["database"].get("port", 5432)
    return {"to": [{"ipBlock": {"cidr": c}} for c in cidrs], "ports": [{"protocol": "TCP", "port": port}]}


def test_runner_network_policy_allows_exactly_dns_postgres_and_the_proxy():
    policy = one("defaults", "NetworkPolicy", "runner")["spec"]
    proxy = one("defaults", "Deployment", "egress-proxy")
    assert policy["podSelector"] == RUNNER_SELECTOR
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy.get("ingress", []) == []
    assert policy["egress"] == [
        {"to": [DNS_PEER], "ports": DNS_PORTS},
        _postgres_rule(),
        {"to": [{"podSelector": {"matchLabels": proxy["spec"]["selector"]["matchLabels"]}}],
         "ports": [{"protocol": "TCP", "port": 3128}]},
    ]


def test_egress_proxy_network_policy():
    policy = one("defaults", "NetworkPolicy", "egress-proxy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [{"from": [{"podSelector": RUNNER_SELECTOR}], "ports": [{"protocol": "TCP", "port": 3128}]}]
    assert policy["egress"] == [{"ports": DNS_PORTS}, {"ports": [{"protocol": "TCP", "port": 443}]}]
    plain = one("everything-set", "NetworkPolicy", "egress-proxy")["spec"]
    assert plain["egress"][1] == {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 80}]}


def test_cilium_wildcards_become_patterns():
    cnp = one("everything-set", "CiliumNetworkPolicy", "runner")
    assert cnp["spec"]["egress"][1]["toFQDNs"] == [{"matchName": "commcare.example.org"}, {"matchPattern": "*.commcarehq.org"}]


def test_gateway_network_policy():
    policy = one("defaults", "NetworkPolicy", "gateway")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8000}]}]
    api = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}
    assert policy["egress"] == [{"to": [DNS_PEER], "ports": DNS_PORTS}, _postgres_rule(), api, {"ports": [{"protocol": "TCP", "port": 443}]}]
    restricted = one("ingress", "NetworkPolicy", "gateway")["spec"]
    assert restricted["ingress"][0]["from"] == VALUE_SETS["ingress"]["gateway"]["allowedIngressFrom"]


def test_operator_network_policy():
    policy = one("everything-set", "NetworkPolicy", "operator")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy.get("ingress", []) == []
    api = {"to": [{"ipBlock": {"cidr": "172.18.0.2/32"}}], "ports": [{"protocol": "TCP", "port": 6443}]}
    assert policy["egress"] == [{"to": [DNS_PEER], "ports": DNS_PORTS}, _postgres_rule("everything-set"), api]


def test_network_policies_can_be_turned_off():
    assert "NetworkPolicy" not in kinds("no-network-policies")
    assert "CiliumNetworkPolicy" not in kinds("no-network-policies")
    assert "DATA_EXPLORER_POSTGRES_CIDRS" not in env_of(one("no-network-policies", "Deployment", "operator"))


def test_cilium_policy_replaces_the_proxy():
    policy = one("cilium-without-proxy", "NetworkPolicy", "runner")["spec"]
    assert policy["egress"] == [{"to": [DNS_PEER], "ports": DNS_PORTS}, _postgres_rule()]
    cnp = one("cilium-without-proxy", "CiliumNetworkPolicy", "runner")
    assert cnp["apiVersion"] == "cilium.io/v2"
    assert cnp["spec"]["endpointSelector"] == RUNNER_SELECTOR
    dns, fqdn = cnp["spec"]["egress"]
    assert dns["toEndpoints"] == [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s-app": "kube-dns"}}]
    assert dns["toPorts"] == [{"ports": [{"port": "53", "protocol": "ANY"}], "rules": {"dns": [{"matchPattern": "*"}]}}]
    assert fqdn["toFQDNs"] == [{"matchName": host} for host in HOSTS]
    assert fqdn["toPorts"] == [{"ports": [{"port": "443", "protocol": "TCP"}]}]
    assert "CiliumNetworkPolicy" not in kinds("defaults")


def test_notes_render():
    notes = _render("defaults")[0]["data-explorer/templates/NOTES.txt"]
    assert SECRET in notes and "egressProxy.allowedHosts" in notes
    assert "https://mcp.example.org/mcp" in _render("ingress")[0]["data-explorer/templates/NOTES.txt"]
