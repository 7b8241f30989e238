"""The kind suite's install values, checked offline: they must render with the chart."""

from __future__ import annotations

import helm_python as helm
import pytest
import yaml

from e2e_helpers import CHART_DIR, RELEASE, chart_values, split_image


def test_split_image():
    assert split_image("data-explorer:e2e") == ("data-explorer", "e2e", "")
    assert split_image("localhost:5001/de:1@sha256:ab") == ("localhost:5001/de", "1", "sha256:ab")
    assert split_image("localhost:5001/de") == ("localhost:5001/de", "", "")


@pytest.mark.parametrize("policies", ["1", "0"])
def test_e2e_values_render(policies):
    hosts = ["commcare-sim.de-e2e-abc123.svc", "commcare-slow.de-e2e-abc123.svc"]
    values = chart_values("data-explorer:e2e", "de-e2e-abc123", hosts, {"DATA_EXPLORER_E2E_NETWORK_POLICIES": policies})
    with helm.Chart.load(CHART_DIR) as chart:
        files = chart.render(values, name=RELEASE, namespace="de-e2e-abc123")
    docs = [d for path, text in files.items() if not path.endswith(".txt") for d in yaml.safe_load_all(text) if d]
    runner_sa = [d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == f"{RELEASE}-runner"]
    assert runner_sa, "the suite expects the runner ServiceAccount under this name"
    assert ("NetworkPolicy" in {d["kind"] for d in docs}) == (policies == "1")
