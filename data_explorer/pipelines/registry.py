"""The pipeline registry: reads and validates ``pipelines/*.yml``.

A bad file is reported by file name and key path (``sources[1].tables[0].columns[3].type``)
with what is wrong, so it can be fixed without reading this code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SQL_TYPES = ("text", "integer", "bigint", "boolean", "timestamptz", "date", "numeric", "double precision", "jsonb")
_NAME = r"^[a-z][a-z0-9_]{0,47}$"


class PipelineError(ValueError):
    """A pipeline file is missing, unreadable or invalid; the message says which and where."""

    code = "CONFIGURATION_ERROR"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    name: str = Field(pattern=_NAME)
    type: str
    description: str = Field(min_length=1)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in SQL_TYPES:
            raise ValueError(f"{value!r} is not a supported type; use one of: {', '.join(SQL_TYPES)}")
        return value


class ParentRef(_Strict):
    table: str = Field(pattern=_NAME)
    key: str = Field(pattern=_NAME)


class Table(_Strict):
    name: str = Field(pattern=_NAME)
    description: str = Field(min_length=1)
    primary_key: tuple[str, ...] = Field(min_length=1)
    columns: tuple[Column, ...] = Field(min_length=1)
    parent: ParentRef | None = None

    @model_validator(mode="after")
    def _keys_exist(self) -> "Table":
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"columns repeated: {', '.join(dupes)}")
        missing = [k for k in self.primary_key if k not in names]
        if missing:
            raise ValueError(f"primary_key names columns that are not declared: {', '.join(missing)}")
        if self.parent and self.parent.key not in names:
            raise ValueError(f"parent.key {self.parent.key!r} is not a column of this table")
        return self

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


class Discover(_Strict):
    loader: str
    description: str
    tables: tuple[Table, ...] = ()


class Source(_Strict):
    name: str = Field(pattern=_NAME)
    loader: str
    incremental: bool
    description: str = Field(min_length=1)
    tables: tuple[Table, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _parents_exist(self) -> "Source":
        names = {t.name for t in self.tables}
        for table in self.tables:
            if table.parent and table.parent.table not in names:
                raise ValueError(f"table {table.name!r}: parent table {table.parent.table!r} is not produced by this source")
        return self


class Model(_Strict):
    name: str = Field(pattern=_NAME)
    description: str = Field(min_length=1)
    columns: tuple[Column, ...] = Field(min_length=1)


class CaseTypeViews(_Strict):
    prefix: str = Field(pattern=r"^[a-z][a-z0-9_]{0,15}$")
    source_model: str
    description: str


class Relationship(_Strict):
    from_: str = Field(alias="from", pattern=r"^[a-z0-9_]+\.[a-z0-9_]+$")
    to: str = Field(pattern=r"^[a-z0-9_]+\.[a-z0-9_]+$")
    description: str = ""


class Pipeline(_Strict):
    name: str = Field(pattern=_NAME)
    version: int = Field(ge=1)
    provider: Literal["commcare"]
    description: str = Field(min_length=1)
    discover: Discover
    sources: tuple[Source, ...] = Field(min_length=1)
    models: tuple[Model, ...] = Field(min_length=1)
    case_type_views: CaseTypeViews | None = None
    relationships: tuple[Relationship, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> "Pipeline":
        for label, items in (("sources", self.sources), ("models", self.models)):
            names = [i.name for i in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{label} repeated: {', '.join(dupes)}")
        raw = [t.name for t in self.raw_tables]
        dupes = sorted({n for n in raw if raw.count(n) > 1})
        if dupes:
            raise ValueError(f"raw tables produced twice: {', '.join(dupes)}")
        columns = {m.name: {c.name for c in m.columns} for m in self.models}
        for i, rel in enumerate(self.relationships):
            for end in (rel.from_, rel.to):
                table, column = end.split(".")
                if table not in columns:
                    raise ValueError(f"relationships[{i}]: {end!r} names no declared model")
                if column not in columns[table]:
                    raise ValueError(f"relationships[{i}]: model {table!r} has no column {column!r}")
        if self.case_type_views and self.case_type_views.source_model not in columns:
            raise ValueError(f"case_type_views.source_model {self.case_type_views.source_model!r} names no declared model")
        return self

    @property
    def raw_tables(self) -> tuple[Table, ...]:
        return self.discover.tables + tuple(t for s in self.sources for t in s.tables)

    def source(self, name: str) -> Source:
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)

    def model(self, name: str) -> Model:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + ("from" if part == "from_" else str(part))
    return out or "(top level)"


def _describe(exc: ValidationError, path: Path) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{path.name}: {_key_path(loc)}: {msg}")
    return "\n".join(lines)


def load_pipeline(path: Path) -> Pipeline:
    """Read and validate one pipeline file, or raise PipelineError naming the file and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read pipeline file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PipelineError(f"{path.name}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path.name}: (top level): expected a mapping of pipeline keys, got {type(data).__name__}")
    try:
        pipeline = Pipeline.model_validate(data)
    except ValidationError as exc:
        raise PipelineError(_describe(exc, path)) from None
    if pipeline.name != path.stem:
        raise PipelineError(f"{path.name}: name: {pipeline.name!r} must match the file name {path.stem!r}")
    return pipeline


class Registry:
    """All pipelines of a directory, validated at load."""

    def __init__(self, pipelines: dict[str, Pipeline], files: dict[str, Path] | None = None):
        self._pipelines = pipelines
        self._files = files or {}

    @classmethod
    def from_directory(cls, directory: Path) -> "Registry":
        if not directory.is_dir():
            raise PipelineError(f"{directory}: pipeline directory does not exist")
        files = sorted(directory.glob("*.yml")) + sorted(directory.glob("*.yaml"))
        if not files:
            raise PipelineError(f"{directory}: no pipeline files (*.yml)")
        problems, pipelines = [], {}
        for path in files:
            try:
                pipelines[path.stem] = load_pipeline(path)
            except PipelineError as exc:
                problems.append(str(exc))
        if problems:
            raise PipelineError("\n".join(problems))
        return cls(pipelines, {path.stem: path for path in files})

    def file_name(self, name: str) -> str:
        path = self._files.get(name)
        return path.name if path else f"{name}.yml"

    def names(self) -> list[str]:
        return sorted(self._pipelines)

    def get(self, name: str) -> Pipeline:
        if not isinstance(name, str) or not re.match(_NAME, name) or name not in self._pipelines:
            raise PipelineError(f"unknown pipeline {name!r}; available: {', '.join(self.names())}")
        return self._pipelines[name]
