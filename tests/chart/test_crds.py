"""The CRDs in deploy/crds: valid, structural, described, with printer columns and status."""

from __future__ import annotations

import re

import jsonschema
import kubernetes_validate
import pytest

from chart_helpers import CRD_DIR, KUBE_VERSIONS, describe, load_crds, load_yaml_documents, openapi_schema, to_json_schema, walk_schema

CRDS = load_crds()
KINDS = sorted(CRDS)
# Object plumbing every resource has; the API server documents it, not us.
STANDARD_FIELDS = ("apiVersion", "kind", "metadata")


def test_both_crds_are_there():
    assert KINDS == ["MaterializationRun", "TenantSchema"]
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == ["materializationruns.yaml", "tenantschemas.yaml"]
    for path in CRD_DIR.glob("*.yaml"):
        assert len(load_yaml_documents(path)) == 1, f"{path.name} should hold one CRD"


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_crd_is_a_valid_v1_customresourcedefinition(kind, version):
    crd = CRDS[kind]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    try:
        kubernetes_validate.validate(crd, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(describe(exc, crd))


@pytest.mark.parametrize("kind", KINDS)
def test_names_group_and_scope(kind):
    crd = CRDS[kind]
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == f"{names['plural']}.dataexplorer.io"
    assert crd["spec"]["group"] == "dataexplorer.io"
    assert crd["spec"]["scope"] == "Namespaced"
    assert names["singular"] == kind.lower() and names["listKind"] == f"{kind}List"
    assert names["shortNames"], "short names make kubectl pleasant"
    assert "dataexplorer" in names.get("categories", [])
    [version] = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]


@pytest.mark.parametrize("kind", KINDS)
def test_status_subresource(kind):
    [version] = CRDS[kind]["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    assert "status" in openapi_schema(CRDS[kind])["properties"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_property_has_a_description(kind):
    root = openapi_schema(CRDS[kind])
    assert root.get("description", "").strip(), "the root schema needs a description for kubectl explain"
    missing = [
        path
        for path, node in walk_schema(root)
        if path.split(".")[0].split("[")[0] not in STANDARD_FIELDS and not str(node.get("description", "")).strip()
    ]
    assert missing == [], f"{kind}: properties without a description: {missing}"
    # spec and status both reach deep enough for this to mean something
    paths = {path for path, _ in walk_schema(root)}
    assert any(p.startswith("spec.") for p in paths) and any(p.startswith("status.") for p in paths)
    if kind == "TenantSchema":
        assert "status.conditions[].reason" in paths  # the walk goes into array items


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_structural(kind):
    """Every node says its type (or preserves unknown fields), as the API server requires."""
    root = openapi_schema(CRDS[kind])
    assert root["type"] == "object"
    problems = []
    for path, node in [("(root)", root), *walk_schema(root)]:
        if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{path}: no type")
        if node.get("type") == "array" and not isinstance(node.get("items"), dict):
            problems.append(f"{path}: an array needs one items schema")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties together")
        for forbidden in ("$ref", "definitions", "dependencies", "patternProperties", "uniqueItems"):
            if forbidden in node:
                problems.append(f"{path}: {forbidden} is not allowed in a CRD schema")
        if "pattern" in node:
            re.compile(node["pattern"])
    metadata = root["properties"]["metadata"]
    assert set(metadata) <= {"type", "properties"} and set(metadata.get("properties", {})) <= {"name", "generateName"}
    assert problems == [], f"{kind}: {problems}"


@pytest.mark.parametrize("kind", KINDS)
def test_defaults_satisfy_their_own_schema(kind):
    root = openapi_schema(CRDS[kind])
    defaults = [(path, node) for path, node in walk_schema(root) if "default" in node]
    assert defaults, "spec fields with defaults are documented in the CRD"
    for path, node in defaults:
        plain = {k: v for k, v in to_json_schema(node).items() if k != "default"}
        errors = [e.message for e in jsonschema.Draft7Validator(plain).iter_errors(node["default"])]
        assert errors == [], f"{kind} {path}: default {node['default']!r}: {errors}"


def _schema_at(root: dict, json_path: str) -> dict | None:
    node = root
    for part in json_path.strip(".").split("."):
        node = node.get("properties", {}).get(part)
        if node is None:
            return None
    return node


@pytest.mark.parametrize("kind", KINDS)
def test_printer_columns(kind):
    [version] = CRDS[kind]["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert {"Tenant", "Phase", "Age"} <= set(columns)
    if kind == "MaterializationRun":
        assert "Rows" in columns and "Progress" in columns
    root = openapi_schema(CRDS[kind])
    for column in columns.values():
        if column["jsonPath"].startswith(".metadata."):
            continue
        target = _schema_at(root, column["jsonPath"])
        assert target is not None, f"column {column['name']} points at {column['jsonPath']}, which the schema lacks"
        expected = {"date": "string", "integer": "integer", "string": "string", "number": "number", "boolean": "boolean"}
        assert target["type"] == expected[column["type"]], column
        if column["type"] == "date":
            assert target.get("format") == "date-time", column
        assert column.get("description", "").strip(), column


def test_phases_match_the_design():
    ts = openapi_schema(CRDS["TenantSchema"])["properties"]["status"]["properties"]["phase"]["enum"]
    mr = openapi_schema(CRDS["MaterializationRun"])["properties"]["status"]["properties"]["phase"]["enum"]
    assert ts == ["Pending", "Provisioning", "Active", "Materializing", "Expired", "TearingDown", "Failed"]
    assert mr == ["Pending", "Discovering", "Loading", "Transforming", "Succeeded", "Failed", "Cancelled"]
