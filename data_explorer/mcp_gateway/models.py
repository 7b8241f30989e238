"""What each tool returns in ``data``: the typed part of its output schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


INCOMPLETE = Field(
        default=None,
        description="Sources whose last full pass stored fewer records than CommCare reported, each with "
        "'server N, stored M (K missing)': answers from them may undercount. Absent when every source is complete.",
    )


class RunSummary(BaseModel):
    run_id: str
    phase: str = Field(description="Pending, Discovering, Loading, Transforming, Succeeded, Failed or Cancelled.")
    progress: dict[str, Any] = Field(default_factory=dict, description="{current, total, message}: percent done and the step.")
    error: dict[str, Any] | None = Field(default=None, description="{code, message} when the run failed or was cancelled.")
    created_at: datetime | None = None
    completed_at: datetime | None = None


class RunData(RunSummary):
    tenant_id: str
    pipeline: str
    mode: str = Field(description="full or incremental.")
    started_at: datetime | None = None
    phases: dict[str, Any] = Field(
        default_factory=dict,
        description="Per phase: discover (counts), load (per source: state, rows), transform (per model: state, rows), "
        "publish (row counts). Compact unless verbose.",
    )
    incomplete: dict[str, str] | None = INCOMPLETE
    next_step: str | None = Field(default=None, description="What to do next.")


class TenantStatus(BaseModel):
    tenant_id: str = Field(description="The CommCare project space (domain).")
    schema_name: str = Field(alias="schema", description="Its PostgreSQL schema.")
    provisioned: bool = Field(description="Whether its schema and roles exist.")
    phase: str = Field(description="Pending (never materialized), Active, Materializing, Expired or Failed.")
    has_data: bool = Field(description="Whether published tables exist to query.")
    last_materialized_at: datetime | None = None
    last_run: RunSummary | None = None
    active_run: RunSummary | None = None
    expires_at: datetime | None = Field(default=None, description="When the schema is torn down if left idle.")
    incomplete: dict[str, str] | None = INCOMPLETE
    next_step: str | None = None

    model_config = {"populate_by_name": True}


class TenantList(BaseModel):
    tenants: list[TenantStatus]
    unlisted: str = Field(description="How to use a project space of yours that CommCare leaves out of this list.")


class PipelineInfo(BaseModel):
    name: str
    description: str
    sources: list[str] | list[dict[str, Any]]
    tables: list[str] | list[dict[str, Any]]


class PipelineList(BaseModel):
    pipelines: list[PipelineInfo]


class ColumnInfo(BaseModel):
    name: str
    type: str
    description: str | None = None
    label: str | None = Field(default=None, description="The form question's label, for case properties.")
    source: str = Field(description="pipeline (declared), app (from the app definitions) or database.")


class TableInfo(BaseModel):
    name: str
    kind: str = Field(description="table or view.")
    description: str | None = None
    row_count: int | None = Field(default=None, description="Rows at the last successful materialization.")
    columns: list[ColumnInfo] | None = Field(default=None, description="Only with verbose.")


class TableList(BaseModel):
    materialized_at: datetime | None = Field(description="When the last successful run published these tables.")
    incomplete: dict[str, str] | None = INCOMPLETE
    tables: list[TableInfo]


class TableDescription(BaseModel):
    name: str
    kind: str
    description: str | None
    row_count: int | None
    materialized_at: datetime | None
    columns: list[ColumnInfo]
    relationships: list[dict[str, str]] = Field(default_factory=list, description="Joins this table takes part in.")


class Metadata(BaseModel):
    materialized_at: datetime | None
    tables: list[TableInfo]
    relationships: list[dict[str, str]]
    case_types: list[dict[str, Any]]
    forms: list[dict[str, Any]]
    apps: list[dict[str, Any]]


class QueryData(BaseModel):
    columns: list[dict[str, str]] = Field(description="[{name, type}] in result order.")
    rows: list[list[Any]] = Field(description="Result rows as JSON values.")
    row_count: int = Field(description="Rows returned (after the cap).")
    truncated: bool = Field(description="True when the row or byte cap cut the result.")
    truncated_reason: str | None = Field(default=None, description="rows or bytes, when truncated.")
    max_rows: int


class TeardownData(BaseModel):
    tenant_id: str
    dropped: bool = Field(description="Whether there was anything to drop.")
    metadata_kept: bool = Field(description="The tenant's app metadata and run history stay.")
