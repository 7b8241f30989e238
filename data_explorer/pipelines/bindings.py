"""Checks that a pipeline's loaders exist and that the raw tables it declares are the ones
they produce, column for column. Run before any work, so a typo in the YAML is reported
by file and key instead of landing data in the wrong place."""

from __future__ import annotations

from data_explorer.loaders.commcare.applications import FORM_DEFINITION_COLUMNS
from data_explorer.loaders.commcare.sources import LOADERS
from data_explorer.pipelines.registry import Pipeline, PipelineError, Table
from data_explorer.transform.typed_views import DEFINITION_COLUMNS, PROPERTY_COLUMNS

DISCOVER_LOADERS = {
    "commcare.applications": {
        "case_type_definitions": DEFINITION_COLUMNS,
        "case_type_properties": PROPERTY_COLUMNS,
        "form_definitions": FORM_DEFINITION_COLUMNS,
    }
}


def _compare(where: str, loader: str, tables: tuple[Table, ...], produces: dict[str, tuple[str, ...]]) -> list[str]:
    problems = []
    declared = {t.name: t for t in tables}
    if set(declared) != set(produces):
        problems.append(
            f"{where}.tables: loader {loader!r} produces tables {', '.join(sorted(produces))}; "
            f"the file declares {', '.join(sorted(declared)) or 'none'}"
        )
    for index, table in enumerate(tables):
        if table.name not in produces:
            continue
        missing = [c for c in produces[table.name] if c not in table.column_names]
        extra = [c for c in table.column_names if c not in produces[table.name]]
        if missing or extra:
            detail = "; ".join(
                part for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"not produced by the loader: {', '.join(extra)}" if extra else "",
                ) if part
            )
            problems.append(f"{where}.tables[{index}].columns ({table.name}): {detail}")
    return problems


def check_bindings(pipeline: Pipeline, file_name: str) -> None:
    """Raise PipelineError listing every mismatch between the file and the loaders."""
    problems = []
    if pipeline.discover.loader not in DISCOVER_LOADERS:
        problems.append(f"discover.loader: unknown loader {pipeline.discover.loader!r}; known: {', '.join(DISCOVER_LOADERS)}")
    else:
        problems += _compare("discover", pipeline.discover.loader, pipeline.discover.tables, DISCOVER_LOADERS[pipeline.discover.loader])
    for index, source in enumerate(pipeline.sources):
        if source.loader not in LOADERS:
            problems.append(f"sources[{index}].loader: unknown loader {source.loader!r}; known: {', '.join(LOADERS)}")
            continue
        problems += _compare(f"sources[{index}]", source.loader, source.tables, LOADERS[source.loader].produces)
    if problems:
        raise PipelineError("\n".join(f"{file_name}: {p}" for p in problems))
