"""Pure pieces of the kind suite, importable (and checked) without a cluster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CHART_DIR = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "data-explorer"
RELEASE = "data-explorer"
SIMULATOR_PORT = 8765


def split_image(ref: str) -> tuple[str, str, str]:
    """repository, tag, digest of an image reference (a registry port is not a tag)."""
    ref, _, digest = ref.partition("@")
    repository, tag = ref, ""
    if ":" in ref.rsplit("/", 1)[-1]:
        repository, tag = ref.rsplit(":", 1)
    return repository, tag, digest


def chart_values(image: str, namespace: str, simulator_hosts: list[str], environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The chart values the kind suite installs with.

    The CommCare simulators run in pods and serve plain HTTP on SIMULATOR_PORT, so the
    egress proxy allows that port and private addresses. The PostgreSQL CIDRs (kind's pod
    network unless DATA_EXPLORER_E2E_POSTGRES_CIDRS says otherwise) go into every run's
    NetworkPolicy; DATA_EXPLORER_E2E_NETWORK_POLICIES=0 leaves out the chart's own.
    """
    env = os.environ if environ is None else environ
    repository, tag, digest = split_image(image)
    return {
        "image": {"repository": repository, "tag": tag or "latest", "digest": digest, "pullPolicy": "IfNotPresent"},
        "database": {
            "existingSecret": "data-explorer-database",
            "cidrs": env.get("DATA_EXPLORER_E2E_POSTGRES_CIDRS", "10.244.0.0/16").split(","),
        },
        "commcare": {"baseUrl": f"http://{simulator_hosts[0]}:{SIMULATOR_PORT}"},
        "egressProxy": {"allowedHosts": simulator_hosts, "ports": [443, SIMULATOR_PORT], "allowPrivateAddresses": True},
        "runner": {"ttlSecondsAfterFinished": 600},
        "networkPolicies": {"enabled": env.get("DATA_EXPLORER_E2E_NETWORK_POLICIES", "1") != "0"},
    }
