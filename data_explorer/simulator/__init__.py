"""CommCare HQ API simulator: deterministic synthetic project spaces served over real HTTP.

Start one in-process with ``RunningSimulator(demo_config())`` (a context
manager exposing ``base_url``), or from the command line with
``data-explorer simulator``. See ``commcare-api.md`` for the wire contract it
reproduces, ``schema`` for the shape of the data, and ``control`` for the
``/_sim/`` API.
"""

from data_explorer.simulator.config import (
    DEMO_API_KEY, DEMO_USER, OTHER_API_KEY, OTHER_USER, DomainConfig, FaultConfig, FaultRule, Quota, SimulatorConfig,
    WebUser, WireBehaviour, demo_config,
)
from data_explorer.simulator.mutation import Mutation

__all__ = [
    "DEMO_API_KEY", "DEMO_USER", "OTHER_API_KEY", "OTHER_USER", "DomainConfig", "FaultConfig", "FaultRule",
    "Mutation", "Quota", "RunningSimulator", "SimulatorConfig", "WebUser", "WireBehaviour", "demo_config", "serve",
]


def __getattr__(name: str):
    # The server (and its web framework) is imported when first used, not by every command line start.
    if name in ("RunningSimulator", "serve"):
        from data_explorer.simulator import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
