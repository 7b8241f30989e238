"""``data-explorer operator``: run the kopf operator for one namespace."""

from __future__ import annotations

import asyncio

from data_explorer.config import Settings, SettingsError
from data_explorer.kube.api import current_namespace


def run_operator(settings: Settings, *, liveness: str | None = None) -> int:
    import kopf

    from data_explorer.kube.api import KubeApi
    from data_explorer.operator.builders import RunnerConfig
    from data_explorer.operator.context import OperatorContext
    from data_explorer.operator.handlers import build_registry
    from data_explorer.warehouse.database import open_database
    from data_explorer.warehouse.secrets import SecretBox

    if not settings.database_url:
        raise SettingsError("DATABASE_URL is not set: the operator provisions tenants in an existing PostgreSQL.")
    if not settings["DATA_EXPLORER_SECRET_KEY"]:
        raise SettingsError("DATA_EXPLORER_SECRET_KEY is not set: the operator and runners must share one key.")
    namespace = current_namespace(settings)
    runner = RunnerConfig.from_settings(settings)
    with open_database(settings) as db:
        ctx = OperatorContext(settings, db, KubeApi.from_environment(), runner, SecretBox.from_settings(settings))
        registry = build_registry(ctx)
        try:
            asyncio.run(kopf.operator(
                registry=registry, namespaces=[namespace], standalone=True,
                liveness_endpoint=liveness,
            ))
        finally:
            ctx.kube.close()
    return 0


