"""deploy/examples validate against the CRDs (and core kinds against Kubernetes), and bad specs do not."""

from __future__ import annotations

import copy

import jsonschema
import kubernetes_validate
import pytest

from chart_helpers import EXAMPLES_DIR, describe, load_crds, load_yaml_documents, openapi_schema, to_json_schema, validate_builtin

CRDS = load_crds()
GROUP_VERSION = "dataexplorer.io/v1alpha1"
VALIDATORS = {kind: jsonschema.Draft7Validator(to_json_schema(openapi_schema(crd))) for kind, crd in CRDS.items()}
EXAMPLE_FILES = sorted(p.name for p in EXAMPLES_DIR.glob("*.yaml"))


def _errors(obj: dict) -> list[jsonschema.ValidationError]:
    return sorted(VALIDATORS[obj["kind"]].iter_errors(obj), key=lambda e: list(e.absolute_path))


def test_the_examples_are_there():
    assert EXAMPLE_FILES == [
        "credentials-secret.yaml",
        "materializationrun-cancel.yaml",
        "materializationrun-full.yaml",
        "materializationrun.yaml",
        "tenantschema.yaml",
    ]
    assert (EXAMPLES_DIR / "README.md").is_file()


@pytest.mark.parametrize("filename", EXAMPLE_FILES)
def test_example_is_valid(filename):
    docs = load_yaml_documents(EXAMPLES_DIR / filename)
    assert docs, f"{filename} is empty"
    for obj in docs:
        if obj["apiVersion"] == GROUP_VERSION:
            errors = _errors(obj)
            assert errors == [], [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
        else:
            try:
                validate_builtin(obj)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(describe(exc, obj))


def _example(filename: str) -> dict:
    [obj] = load_yaml_documents(EXAMPLES_DIR / filename)
    return obj


def test_examples_tell_one_story():
    secret = _example("credentials-secret.yaml")
    tenant = _example("tenantschema.yaml")
    assert tenant["spec"]["tenant"] == "demo"
    ref = tenant["spec"]["credentialsSecretRef"]
    assert ref["name"] == secret["metadata"]["name"]
    assert {ref.get("usernameKey", "username"), ref.get("apiKeyKey", "apiKey")} == set(secret["stringData"])
    assert all("replace" in value.lower() for value in secret["stringData"].values()), "placeholders only"
    runs = {name: _example(name) for name in EXAMPLE_FILES if name.startswith("materializationrun")}
    assert {run["spec"]["tenantSchema"] for run in runs.values()} == {tenant["metadata"]["name"]}
    assert runs["materializationrun.yaml"]["spec"]["mode"] == "incremental"
    assert runs["materializationrun-full.yaml"]["spec"]["mode"] == "full"
    cancel = runs["materializationrun-cancel.yaml"]
    assert cancel["spec"]["cancel"] is True
    # the cancel object may be applied over the full run: its immutable fields match
    full = runs["materializationrun-full.yaml"]
    assert cancel["metadata"]["name"] == full["metadata"]["name"]
    assert {k: v for k, v in cancel["spec"].items() if k != "cancel"} == full["spec"]


def _with(filename: str, path: str, value):
    """The example with one spec field set (value ...) or removed (value is DELETE)."""
    obj = copy.deepcopy(_example(filename))
    *parents, last = path.split(".")
    node = obj
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return obj


DELETE = object()
TS, MR = "tenantschema.yaml", "materializationrun.yaml"

# (case, example, field, value, path the schema reports, validator that fails)
BAD_SPECS = [
    ("unknown mode", MR, "spec.mode", "sometimes", ["spec", "mode"], "enum"),
    ("tenant name with spaces", TS, "spec.tenant", "my project", ["spec", "tenant"], "pattern"),
    ("bad deletionPolicy", TS, "spec.deletionPolicy", "Orphan", ["spec", "deletionPolicy"], "enum"),
    ("negative activeDeadlineSeconds", MR, "spec.activeDeadlineSeconds", -5, ["spec", "activeDeadlineSeconds"], "minimum"),
    ("missing tenantSchema", MR, "spec.tenantSchema", DELETE, ["spec"], "required"),
    ("baseUrl not http(s)", TS, "spec.commcare.baseUrl", "ftp://www.commcarehq.org", ["spec", "commcare", "baseUrl"], "pattern"),
    ("baseUrl with a path", TS, "spec.commcare.baseUrl", "https://www.commcarehq.org/a/demo", ["spec", "commcare", "baseUrl"], "pattern"),
    ("unknown provider", TS, "spec.provider", "dhis2", ["spec", "provider"], "enum"),
    ("missing credentialsSecretRef", TS, "spec.credentialsSecretRef", DELETE, ["spec"], "required"),
    ("bad ttl", TS, "spec.ttl", "1 week", ["spec", "ttl"], "pattern"),
    ("cancel not a boolean", MR, "spec.cancel", "yes", ["spec", "cancel"], "type"),
    ("unknown spec field", MR, "spec.priority", 5, ["spec"], "additionalProperties"),
    ("pipeline with capitals", MR, "spec.pipeline", "CommCare", ["spec", "pipeline"], "pattern"),
]


@pytest.mark.parametrize(("filename", "field", "value", "path", "validator"), [case[1:] for case in BAD_SPECS], ids=[case[0] for case in BAD_SPECS])
def test_bad_spec_is_rejected(filename, field, value, path, validator):
    obj = _with(filename, field, value)
    errors = _errors(obj)
    assert [(list(e.absolute_path), e.validator) for e in errors] == [(path, validator)], [e.message for e in errors]
    if validator == "required":
        assert field.split(".")[-1] in errors[0].message


def test_mode_may_be_left_out():
    obj = _with(MR, "spec.mode", DELETE)
    assert _errors(obj) == []
    mode = openapi_schema(CRDS["MaterializationRun"])["properties"]["spec"]["properties"]["mode"]
    assert mode["default"] == "incremental"
