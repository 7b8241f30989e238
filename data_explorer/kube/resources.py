"""Names of the Kubernetes resources Data Explorer reads and writes. Pure constants."""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "dataexplorer.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Labels on everything the operator creates.
LABEL_RUN = f"{GROUP}/run"
LABEL_RUN_ID = f"{GROUP}/run-id"
LABEL_TENANT = f"{GROUP}/tenant-schema"
LABEL_PASS_THROUGH = f"{GROUP}/pass-through"
MANAGED_BY = "data-explorer-operator"


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        root = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        path = f"{root}/namespaces/{namespace}/{self.plural}"
        if name is not None:
            path += f"/{name}"
            if subresource:
                path += f"/{subresource}"
        return path

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


TENANT_SCHEMAS = Resource(GROUP, VERSION, "tenantschemas", "TenantSchema")
MATERIALIZATION_RUNS = Resource(GROUP, VERSION, "materializationruns", "MaterializationRun")
JOBS = Resource("batch", "v1", "jobs", "Job")
SECRETS = Resource("", "v1", "secrets", "Secret")
NETWORK_POLICIES = Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy")
EVENTS = Resource("", "v1", "events", "Event")
