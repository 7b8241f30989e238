"""The MCP surface, declared once: every tool's name, title, hints, description and body.

Descriptions live in ``descriptions/<tool>.md``. A contract test compares the
registered tools with this table and with a committed snapshot of their
schemas, so a change to what agents see is always deliberate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mcp.types import ToolAnnotations

from data_explorer.mcp_gateway import models
from data_explorer.mcp_gateway.tools import metadata, query, runs, tenants

DESCRIPTIONS = Path(__file__).parent / "descriptions"


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    body: Callable[..., Any]
    data_model: type
    read_only: bool
    destructive: bool = False
    idempotent: bool = True
    open_world: bool = False

    @property
    def description(self) -> str:
        return (DESCRIPTIONS / f"{self.name}.md").read_text(encoding="utf-8").strip()

    @property
    def annotations(self) -> ToolAnnotations:
        return ToolAnnotations(
            title=self.title, read_only_hint=self.read_only, destructive_hint=self.destructive,
            idempotent_hint=self.idempotent, open_world_hint=self.open_world,
        )


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec("list_tenants", "List your project spaces", tenants.list_tenants, models.TenantList, read_only=True),
    ToolSpec("get_schema_status", "Schema status of a project space", tenants.get_schema_status, models.TenantStatus, read_only=True),
    ToolSpec("list_pipelines", "List pipelines", runs.list_pipelines, models.PipelineList, read_only=True),
    ToolSpec("run_materialization", "Load a project space's data", runs.run_materialization, models.RunData,
             read_only=False, idempotent=False, open_world=True),
    ToolSpec("get_materialization_status", "Status of a run", runs.get_materialization_status, models.RunData, read_only=True),
    ToolSpec("cancel_materialization", "Cancel a run", runs.cancel_materialization, models.RunData,
             read_only=False, destructive=True),
    ToolSpec("list_tables", "List tables", metadata.list_tables, models.TableList, read_only=True),
    ToolSpec("describe_table", "Describe a table", metadata.describe_table, models.TableDescription, read_only=True),
    ToolSpec("get_metadata", "All metadata of a project space", metadata.get_metadata, models.Metadata, read_only=True),
    ToolSpec("query", "Run a read-only SQL query", query.query, models.QueryData, read_only=True),
    ToolSpec("teardown_schema", "Drop a project space's schema", tenants.teardown_schema, models.TeardownData,
             read_only=False, destructive=True),
)
