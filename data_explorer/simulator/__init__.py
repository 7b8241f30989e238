"""CommCare HQ API simulator: deterministic synthetic project spaces served over real HTTP.

Start one in-process with ``RunningSimulator(demo_config())`` (a context
manager exposing ``base_url``), or from the command line with
``data-explorer simulator``. See ``commcare-api.md`` for the wire contract it
reproduces, ``schema`` for the shape of the data, and ``control`` for the
``/_sim/`` API.
"""

from data_explorer.simulator.config import (
    DEMO_API_KEY, DEMO_USER, OTHER_API_KEY, OTHER_USER, DomainConfig, FaultConfig, FaultRule, SimulatorConfig,
    WebUser, demo_config,
)
from data_explorer.simulator.runner import RunningSimulator, serve

__all__ = [
    "DEMO_API_KEY", "DEMO_USER", "OTHER_API_KEY", "OTHER_USER", "DomainConfig", "FaultConfig", "FaultRule",
    "RunningSimulator", "SimulatorConfig", "WebUser", "demo_config", "serve",
]
