"""Metadata tools: list_tables, describe_table, get_metadata. Pipeline-driven: descriptions and
relationships come from the pipeline definition and the app definitions found by discover, row
counts and times from the last successful run."""

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import Field

from data_explorer.loaders.commcare.applications import form_entries
from data_explorer.mcp_gateway.calls import Outcome, current
from data_explorer.mcp_gateway.envelope import ToolFailure
from data_explorer.mcp_gateway.models import ColumnInfo, Metadata, TableDescription, TableInfo, TableList
from data_explorer.mcp_gateway.tools.shared import TenantArg, VerboseArg, incomplete
from data_explorer.pipelines.registry import Pipeline
from data_explorer.transform.typed_views import plan_typed_views
from data_explorer.warehouse import catalog
from data_explorer.warehouse.metadata_store import load_metadata
from data_explorer.warehouse.naming import TenantNames
from data_explorer.warehouse.tenant_state import latest_run

PIPELINE = "commcare_sync"


def _snapshot(conn, control: str, names: TenantNames, verbose: bool) -> dict[str, Any]:
    """Everything the metadata tools read, in one database round trip."""
    if not catalog.schema_exists(conn, names.schema):
        raise ToolFailure(
            "NO_DATA",
            f"{names.domain!r} has no published data yet: call run_materialization(tenant='{names.domain}'), then list_tables",
        )
    relations = catalog.relations(conn, names.schema)
    run = latest_run(conn, control, names.domain, succeeded=True)
    columns = {r["name"]: catalog.columns(conn, names.schema, r["name"]) for r in relations} if verbose else {}
    return {
        "relations": relations,
        "columns": columns,
        "counts": ((run or {}).get("phases") or {}).get("publish", {}).get("relations", {}),
        "materialized_at": run["completed_at"] if run else None,
        "incomplete": incomplete((run or {}).get("phases")),
        "metadata": load_metadata(conn, control, names.domain, "commcare") or {"case_types": {}, "forms": [], "apps": []},
    }


def _column_infos(columns: list[dict[str, Any]], relation: str, pipeline: Pipeline, properties: dict[str, tuple]) -> list[ColumnInfo]:
    declared = {}
    try:
        declared = {c.name: c for c in pipeline.model(relation).columns}
    except KeyError:
        pass
    infos = []
    for column in columns:
        prop = properties.get(column["name"])
        if column["name"] in declared:
            source, label = "pipeline", None
        elif prop is not None:
            source, label = "app", prop[4]
        else:
            source, label = "database", None
        infos.append(ColumnInfo(name=column["name"], type=column["type"], description=column["comment"], label=label, source=source))
    return infos


def _typed_views(pipeline: Pipeline, metadata: dict[str, Any]) -> tuple[dict[str, str], dict[str, dict[str, tuple]]]:
    """As discover planned them: case type -> view name, and view name -> column ->
    (case_type, property, column, data_type, label, question)."""
    if not pipeline.case_type_views:
        return {}, {}
    definitions, properties = plan_typed_views(metadata, pipeline.case_type_views.prefix, {m.name for m in pipeline.models})
    views = {d[0]: d[1] for d in definitions}
    columns: dict[str, dict[str, tuple]] = {view: {} for view in views.values()}
    for prop in properties:
        columns[views[prop[0]]][prop[2]] = prop
    return views, columns


def _relationships(pipeline: Pipeline, views: list[str]) -> list[dict[str, str]]:
    rels = [{"from": r.from_, "to": r.to, "description": r.description} for r in pipeline.relationships]
    rels += [{"from": f"{v}.case_id", "to": "cases.case_id", "description": "The case's row in cases."} for v in views]
    return rels


def _tables(snapshot: dict[str, Any], pipeline: Pipeline, verbose: bool) -> list[TableInfo]:
    typed = _typed_views(pipeline, snapshot["metadata"])[1] if verbose else {}
    tables = []
    for r in snapshot["relations"]:
        columns = None
        if verbose:
            columns = _column_infos(snapshot["columns"][r["name"]], r["name"], pipeline, typed.get(r["name"], {}))
        tables.append(TableInfo(name=r["name"], kind=r["kind"], description=r["comment"],
                                row_count=snapshot["counts"].get(r["name"]), columns=columns))
    return tables


async def _read(tenant: str | None, verbose: bool) -> tuple[TenantNames, dict[str, Any], Pipeline]:
    """The tenant's snapshot (NO_DATA before its first run), with its use recorded."""
    call = current()
    names = await call.tenant(tenant)
    snapshot = await call.gateway.db_call(_snapshot, call.gateway.control, names, verbose)
    await call.gateway.touch(names.domain)
    return names, snapshot, call.gateway.registry.get(PIPELINE)


async def list_tables(tenant: TenantArg = None, verbose: VerboseArg = False, ctx: Context = None) -> Outcome[TableList]:
    names, snapshot, pipeline = await _read(tenant, verbose)
    return Outcome(TableList(materialized_at=snapshot["materialized_at"], incomplete=snapshot["incomplete"],
                             tables=_tables(snapshot, pipeline, verbose)), names)


async def describe_table(
    table: Annotated[str, Field(min_length=1, max_length=63, description="A table or view name from list_tables.")],
    tenant: TenantArg = None,
    ctx: Context = None,
) -> Outcome[TableDescription]:
    names, snapshot, pipeline = await _read(tenant, True)
    relation = next((r for r in snapshot["relations"] if r["name"] == table), None)
    if relation is None:
        available = ", ".join(r["name"] for r in snapshot["relations"])
        raise ToolFailure("NOT_FOUND", f"no table {table!r} in {names.domain!r}; tables: {available}")
    typed = _typed_views(pipeline, snapshot["metadata"])[1]
    relationships = [
        r for r in _relationships(pipeline, list(typed))
        if r["from"].split(".")[0] == table or r["to"].split(".")[0] == table
    ]
    return Outcome(
        TableDescription(
            name=table, kind=relation["kind"], description=relation["comment"],
            row_count=snapshot["counts"].get(table), materialized_at=snapshot["materialized_at"],
            columns=_column_infos(snapshot["columns"][table], table, pipeline, typed.get(table, {})),
            relationships=relationships,
        ),
        names,
    )


async def get_metadata(tenant: TenantArg = None, verbose: VerboseArg = False, ctx: Context = None) -> Outcome[Metadata]:
    names, snapshot, pipeline = await _read(tenant, verbose)
    metadata = snapshot["metadata"]
    view_of, typed = _typed_views(pipeline, metadata)
    case_types = []
    for case_type, entry in sorted(metadata.get("case_types", {}).items()):
        item: dict[str, Any] = {"case_type": case_type, "view": view_of.get(case_type), "property_count": len(entry["properties"])}
        if verbose:
            item["properties"] = [{"name": p, **info} for p, info in sorted(entry["properties"].items())]
        case_types.append(item)
    forms = []
    for form in form_entries(metadata):
        item = {"xmlns": form["xmlns"], "app_id": form["app_id"], "name": form["name"], "app": form["app_name"],
                "module": form["module_name"], "case_type": form["case_type"], "question_count": len(form["questions"])}
        if verbose:
            item["questions"] = form["questions"]
        forms.append(item)
    return Outcome(
        Metadata(
            materialized_at=snapshot["materialized_at"], tables=_tables(snapshot, pipeline, verbose),
            relationships=_relationships(pipeline, list(typed)), case_types=case_types, forms=forms,
            apps=metadata.get("apps", []),
        ),
        names,
    )
