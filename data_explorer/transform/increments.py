"""Plans for applying a small change to the published tables without dbt. Pure.

A full run builds every model with dbt into the build schema and swaps it in.
Afterwards, most runs change a few rows: rebuilding 100,000 cases to apply
1,000 changes costs seconds, most of them dbt starting and re-creating every
table. So when a full build succeeds, its compiled SQL becomes a plan, kept with
the published data, and the next run may apply its changes with that SQL
instead, in the publishing transaction:

- a model whose config declares ``meta.increment_keys`` (``{model column:
  ["raw_table.column", ...]}``) is *keyed*: its rows for the keys of raw rows
  loaded since the last publish are deleted and selected again;
- any other table is *rebuilt*: emptied and selected again (the small
  aggregates over the keyed tables);
- views are left alone: the plan is only used while the project, the pipeline
  and what discover found are exactly what they were (the fingerprint), so every
  view's definition is the one that was published.

Keyed models may read only raw tables, each named by their keys, so the keys
say exactly which of their rows can differ. Hooks run only when dbt builds a table (constraints, indexes).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

KEYS_META = "increment_keys"
_MATERIALIZED = ("table", "view")


class PlanUnavailable(ValueError):
    """The compiled project cannot be applied incrementally; the message says why."""


@dataclass(frozen=True)
class KeySet:
    """Raw rows loaded since the last publish, by one column: ``raw_table.column``."""

    table: str
    column: str

    @property
    def label(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class Step:
    name: str  # the model, and its table in the tenant schema
    select: str  # the model's compiled SQL, reading the published tables and the raw ones
    keys: tuple[tuple[str, tuple[KeySet, ...]], ...] = ()  # (model column, key sets); empty: rebuilt

    @property
    def keyed(self) -> bool:
        return bool(self.keys)


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]

    @property
    def key_sets(self) -> tuple[KeySet, ...]:
        seen: dict[KeySet, None] = {}
        for step in self.steps:
            for _, sets in step.keys:
                seen.update(dict.fromkeys(sets))
        return tuple(seen)

    @property
    def keyed_tables(self) -> frozenset[str]:
        """Raw tables whose deleted rows a keyed step cannot notice: a full pass over them needs a full build."""
        return frozenset(k.table for k in self.key_sets)

    def to_json(self) -> dict[str, Any]:
        return {"steps": [
            {"name": s.name, "select": s.select,
             "keys": [[column, [k.label for k in sets]] for column, sets in s.keys]}
            for s in self.steps
        ]}

    @classmethod
    def from_json(cls, data: Any) -> "Plan":
        try:
            steps = tuple(
                Step(s["name"], s["select"], tuple((column, tuple(_key_set(k) for k in sets)) for column, sets in s["keys"]))
                for s in data["steps"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanUnavailable(f"the stored plan is unreadable ({exc!r})") from None
        return cls(steps)


def _key_set(label: Any) -> KeySet:
    if not isinstance(label, str) or label.count(".") != 1 or not all(label.split(".")):
        raise PlanUnavailable(f"increment key {label!r} is not 'raw_table.column'")
    table, column = label.split(".")
    return KeySet(table, column)


def _run_order(models: dict[str, dict[str, Any]]) -> list[str]:
    """Model ids with every model after those it reads; ties by name, so the order is stable."""
    done: list[str] = []
    placed: set[str] = set()
    pending = sorted(models)
    while pending:
        ready = [m for m in pending if all(d in placed for d in models[m]["depends_on"]["nodes"] if d in models)]
        if not ready:
            raise PlanUnavailable(f"models depend on each other in a cycle: {', '.join(pending)}")
        done += ready
        placed.update(ready)
        pending = [m for m in pending if m not in placed]
    return done


def plan_from_manifest(manifest: dict[str, Any], published: dict[str, str]) -> Plan:
    """The plan of a dbt manifest written by a successful ``dbt run``.

    ``published`` maps each model's relation as built (its ``relation_name``) to
    the same relation in the published schema: compiled SQL reads the build
    schema, which the swap renamed.
    """
    nodes = manifest.get("nodes") if isinstance(manifest, dict) else None
    if not isinstance(nodes, dict):
        raise PlanUnavailable("the dbt manifest has no nodes")
    models = {k: n for k, n in nodes.items() if isinstance(n, dict) and n.get("resource_type") == "model"}
    sources = {k: s.get("name") for k, s in (manifest.get("sources") or {}).items() if isinstance(s, dict)}
    steps = []
    for model_id in _run_order(models):
        node = models[model_id]
        name, config = node["name"], node.get("config") or {}
        materialized = config.get("materialized")
        if materialized not in _MATERIALIZED:
            raise PlanUnavailable(f"model {name} is materialized as {materialized!r}; plans know {', '.join(_MATERIALIZED)}")
        if materialized == "view":
            continue
        select = node.get("compiled_code")
        if not isinstance(select, str) or not select.strip():
            raise PlanUnavailable(f"model {name} has no compiled SQL in the manifest")
        depends = node["depends_on"]["nodes"]
        for dep in depends:
            if dep in models:
                built = models[dep]["relation_name"]
                if built not in published:
                    raise PlanUnavailable(f"model {name} reads {built}, which is not published")
                select = select.replace(built, published[built])
        keys = _declared_keys(name, (config.get("meta") or {}).get(KEYS_META))
        if keys:
            reads = {sources.get(dep) for dep in depends if dep not in models}
            if any(dep in models for dep in depends):
                raise PlanUnavailable(f"model {name} declares {KEYS_META} but reads other models; keyed models read raw tables only")
            keyed_by = {key.table for _, sets in keys for key in sets}
            for table in sorted(keyed_by - reads):
                raise PlanUnavailable(f"model {name}: {KEYS_META} names {table}, which it does not read")
            for table in sorted(reads - keyed_by):  # its changes would never reach the model's rows
                raise PlanUnavailable(f"model {name} reads {table}, which its {KEYS_META} do not name")
        steps.append(Step(name, select.strip().rstrip(";"), keys))
    return Plan(tuple(steps))


def _declared_keys(model: str, declared: Any) -> tuple[tuple[str, tuple[KeySet, ...]], ...]:
    if declared is None:
        return ()
    if not isinstance(declared, dict) or not declared:
        raise PlanUnavailable(f"model {model}: {KEYS_META} must map model columns to lists of 'raw_table.column'")
    out = []
    for column, labels in sorted(declared.items()):
        if not isinstance(column, str) or not isinstance(labels, list) or not labels:
            raise PlanUnavailable(f"model {model}: {KEYS_META}[{column!r}] must be a non-empty list of 'raw_table.column'")
        out.append((column, tuple(_key_set(label) for label in labels)))
    return tuple(out)


def fingerprint(parts: Iterable[Any]) -> str:
    """A digest of everything a plan's SQL was compiled from; JSON-serialisable parts."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str, separators=(",", ":")).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def _quoted(*parts: str) -> str:
    """A relation as dbt-postgres writes it in compiled SQL."""
    return ".".join('"%s"' % p.replace('"', '""') for p in parts)


def published_relations(manifest: dict[str, Any], database: str, build_schema: str, schema: str) -> dict[str, str]:
    """Each model's relation as built in ``build_schema`` -> the same relation once published as ``schema``."""
    out = {}
    for node in (manifest.get("nodes") or {}).values():
        if isinstance(node, dict) and node.get("resource_type") == "model" and isinstance(node.get("name"), str):
            out[_quoted(database, build_schema, node["name"])] = _quoted(database, schema, node["name"])
    return out


def check_keys(plan: Plan, raw_tables: Iterable[Any]) -> None:
    """Every key set names a declared raw table and one of its columns (``raw_tables``: pipeline Tables)."""
    declared = {t.name: set(t.column_names) for t in raw_tables}
    for key in plan.key_sets:
        if key.column not in declared.get(key.table, ()):
            raise PlanUnavailable(f"{KEYS_META} names {key.label}, which is not a column of a raw table of the pipeline")
