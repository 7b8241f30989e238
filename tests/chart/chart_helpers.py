"""Shared by the chart, CRD and example tests: paths, schema conversion, validation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator

import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "deploy" / "crds"
CHART_DIR = REPO / "deploy" / "helm" / "data-explorer"
EXAMPLES_DIR = REPO / "deploy" / "examples"

# Kubernetes versions every manifest is validated against: the oldest with CEL
# validation rules on by default that kind still ships node images for, a middle
# one, and the newest kubernetes-validate carries schemas for.
KUBE_VERSIONS = ("1.29.0", "1.33.0", "1.37.0")

# Kinds kubernetes-validate has no schema for, and why that is fine.
UNVALIDATED_KINDS = {
    "CiliumNetworkPolicy": "a Cilium CRD (cilium.io/v2); kubernetes-validate ships only built-in kinds",
}


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def load_crds() -> dict[str, dict[str, Any]]:
    """The CRDs in deploy/crds, by kind."""
    crds = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for doc in load_yaml_documents(path):
            crds[doc["spec"]["names"]["kind"]] = doc
    return crds


def openapi_schema(crd: dict[str, Any], version: str = "v1alpha1") -> dict[str, Any]:
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            return served["schema"]["openAPIV3Schema"]
    raise KeyError(version)


def to_json_schema(node: Any) -> Any:
    """The CRD's OpenAPI v3 subset as plain JSON Schema.

    x-kubernetes-* extensions are dropped (CEL rules need the API server, and
    transition rules an old object). Objects that declare properties and do not
    preserve unknown fields get additionalProperties: false, which is what
    kubectl's default strict field validation does with an unknown field.
    """
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: to_json_schema(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    if "properties" in node:
        out["properties"] = {name: to_json_schema(sub) for name, sub in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in node:
            out["additionalProperties"] = False
    return out


def walk_schema(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node below ``node`` with a dotted path (``[]`` for array items)."""
    for name, sub in node.get("properties", {}).items():
        child = f"{path}.{name}" if path else name
        yield child, sub
        yield from walk_schema(sub, child)
    if isinstance(node.get("items"), dict):
        child = f"{path}[]"
        yield child, node["items"]
        yield from walk_schema(node["items"], child)
    if isinstance(node.get("additionalProperties"), dict):
        child = f"{path}{{}}"
        yield child, node["additionalProperties"]
        yield from walk_schema(node["additionalProperties"], child)


def validate_builtin(obj: dict[str, Any], versions: tuple[str, ...] = KUBE_VERSIONS) -> None:
    """Validate a built-in kind strictly (unknown fields rejected) for every version.

    Raises kubernetes_validate.ValidationError with the failing path and version.
    """
    for version in versions:
        kubernetes_validate.validate(copy.deepcopy(obj), version, strict=True)


def describe(error: kubernetes_validate.ValidationError, obj: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.path) or "(root)"
    name = obj.get("metadata", {}).get("name")
    return f"{obj.get('kind')}/{name} is invalid for Kubernetes {error.version} at {where}: {error.message}"
