"""A small Kubernetes API client: get, list, create, patch and delete JSON objects over HTTP.

The operator, the gateway's Kubernetes control plane and the runner's status
reporter share it. It speaks plain REST with merge patches, so it works the
same against a cluster and against an API emulator in tests. Inside a pod it
reads the service account token on every request (bound tokens rotate).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from data_explorer.kube.resources import Resource

_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeError(Exception):
    """An API call the server refused; ``status`` is the HTTP status, ``reason`` the API's reason."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"Kubernetes API {status} {reason}: {message}")
        self.status = status
        self.reason = reason


class KubeApi:
    def __init__(self, server: str, *, token: str | None = None, token_file: Path | None = None,
                 verify: Any = True, cert: Any = None, timeout: float = 30.0):
        self._token = token
        self._token_file = token_file
        self._client = httpx.Client(base_url=server.rstrip("/"), verify=verify, cert=cert, timeout=timeout, trust_env=False)

    @classmethod
    def from_environment(cls) -> "KubeApi":
        """In a pod: the service account; elsewhere: the current kubeconfig context."""
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if host and (_SA_DIR / "token").exists():
            server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
            return cls(server, token_file=_SA_DIR / "token", verify=str(_SA_DIR / "ca.crt"))
        return cls._from_kubeconfig()

    @classmethod
    def _from_kubeconfig(cls) -> "KubeApi":
        import kopf

        info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
        if info is None:
            raise KubeError(0, "NoCredentials", "no in-cluster service account and no kubeconfig (KUBECONFIG or ~/.kube/config)")
        verify: Any = True
        if info.insecure:
            verify = False
        elif info.ca_path:
            verify = str(info.ca_path)
        elif info.ca_data:
            import ssl
            verify = ssl.create_default_context(cadata=_b64(info.ca_data).decode())
        cert = None
        if info.certificate_path and info.private_key_path:
            cert = (str(info.certificate_path), str(info.private_key_path))
        elif info.certificate_data and info.private_key_data:
            cert = _materialize_client_cert(_b64(info.certificate_data), _b64(info.private_key_data))
        return cls(info.server, token=info.token, verify=verify, cert=cert)

    def close(self) -> None:
        self._client.close()

    # -- verbs ------------------------------------------------------------

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        return self._request("GET", resource.path(namespace, name))

    def list(self, resource: Resource, namespace: str, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": ",".join(f"{k}={v}" for k, v in labels.items())} if labels else None
        body = self._request("GET", resource.path(namespace), params=params) or {}
        items = body.get("items") or []
        if labels:  # not every API server (or emulator) applies the selector; filter here as well
            items = [i for i in items if all(((i.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in labels.items())]
        return items

    def create(self, resource: Resource, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": resource.api_version, "kind": resource.kind, **body}
        return self._request("POST", resource.path(namespace), json=body, missing_ok=False)

    def patch(self, resource: Resource, namespace: str, name: str, body: dict[str, Any], *, status: bool = False) -> dict[str, Any] | None:
        """A JSON merge patch; None when the object is gone."""
        return self._request(
            "PATCH", resource.path(namespace, name, "status" if status else None), json=body,
            headers={"Content-Type": "application/merge-patch+json"},
        )

    def delete(self, resource: Resource, namespace: str, name: str, *, propagation: str = "Background") -> bool:
        """True if it existed; its dependents are collected by propagation (Background: after it is gone)."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        return self._request("DELETE", resource.path(namespace, name), json=body) is not None

    # -- transport --------------------------------------------------------

    def _request(self, method: str, path: str, *, missing_ok: bool = True, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}) or {})
        token = self._token
        if self._token_file is not None:
            token = self._token_file.read_text().strip()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = self._client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise KubeError(0, "Unreachable", f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            reason, message = "", response.text[:300]
            try:
                status = response.json()
                reason, message = status.get("reason") or "", status.get("message") or message
            except ValueError:
                pass
            raise KubeError(response.status_code, reason, f"{method} {path}: {message}")
        try:
            return response.json()
        except ValueError:
            raise KubeError(response.status_code, "BadResponse", f"{method} {path}: the API server answered with non-JSON") from None


def _b64(data: str | bytes) -> bytes:
    """kubeconfig's *-data fields are base64 of PEM."""
    import base64

    return base64.b64decode(data)


def _materialize_client_cert(cert: bytes, key: bytes) -> tuple[str, str]:
    """httpx needs client certificates as files: write them 0600 to a private temporary directory."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="data-explorer-kube-"))
    paths = []
    for name, data in (("client.crt", cert), ("client.key", key)):
        path = folder / name
        path.touch(mode=0o600)
        path.write_bytes(data)
        paths.append(str(path))
    return paths[0], paths[1]


def current_namespace(settings) -> str:
    """DATA_EXPLORER_NAMESPACE, else the pod's own namespace."""
    from data_explorer.config import SettingsError

    if settings["DATA_EXPLORER_NAMESPACE"]:
        return settings["DATA_EXPLORER_NAMESPACE"]
    path = _SA_DIR / "namespace"
    if path.exists():
        return path.read_text().strip()
    raise SettingsError("DATA_EXPLORER_NAMESPACE is not set and this is not a pod: set the namespace of the resources.")
