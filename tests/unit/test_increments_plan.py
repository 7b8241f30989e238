"""Plans from dbt manifests: run order, published relations, keyed and rebuilt steps, and the
reasons a project cannot be applied incrementally."""

from __future__ import annotations

import pytest

from data_explorer.pipelines.registry import Column, Table
from data_explorer.transform.increments import (
    KeySet, Plan, PlanUnavailable, check_keys, fingerprint, plan_from_manifest, published_relations,
)

DB, BUILD, LIVE, RAW = "db", "t__build", "t", "t__raw"


def _rel(schema: str, name: str) -> str:
    return f'"{DB}"."{schema}"."{name}"'


def _model(name, depends, code=None, materialized="table", meta=None):
    return {
        "resource_type": "model", "name": name, "relation_name": _rel(BUILD, name),
        "config": {"materialized": materialized, "meta": meta or {}},
        "depends_on": {"nodes": depends},
        "compiled_code": code if code is not None else f"select * from {_rel(RAW, name)}",
    }


def _manifest(*models):
    sources = {f"source.p.raw.{n}": {"name": n} for n in ("cases", "forms", "blocks")}
    return {"nodes": {f"model.p.{m['name']}": m for m in models}, "sources": sources}


def _plan(manifest):
    return plan_from_manifest(manifest, published_relations(manifest, DB, BUILD, LIVE))


def test_steps_follow_dependencies_and_read_the_published_schema():
    manifest = _manifest(
        _model("summary", ["model.p.cases"], f"select count(*) from {_rel(BUILD, 'cases')} -- trailing"),
        _model("cases", ["source.p.raw.cases"], meta={"increment_keys": {"case_id": ["cases.case_id"]}}),
        _model("by_type", ["model.p.cases"], materialized="view"),
    )
    plan = _plan(manifest)
    assert [s.name for s in plan.steps] == ["cases", "summary"]  # the view is left alone
    cases, summary = plan.steps
    assert cases.keyed and cases.keys == (("case_id", (KeySet("cases", "case_id"),)),)
    assert not summary.keyed
    assert _rel(LIVE, "cases") in summary.select and BUILD not in summary.select
    assert plan.keyed_tables == {"cases"}
    assert Plan.from_json(plan.to_json()) == plan


def test_key_sets_are_shared_between_steps():
    keys = {"form_id": ["forms.form_id", "blocks.form_id"], "case_id": ["cases.case_id"]}
    manifest = _manifest(
        _model("actions", ["source.p.raw.blocks", "source.p.raw.forms", "source.p.raw.cases"], meta={"increment_keys": keys}),
        _model("forms", ["source.p.raw.forms"], meta={"increment_keys": {"form_id": ["forms.form_id"]}}),
    )
    plan = _plan(manifest)
    assert [k.label for k in plan.key_sets] == ["cases.case_id", "forms.form_id", "blocks.form_id"]
    assert plan.steps[0].keys[0][0] == "case_id"  # columns in a stable order


@pytest.mark.parametrize("model, why", [
    (_model("inc", ["source.p.raw.cases"], materialized="incremental"), "materialized as 'incremental'"),
    (_model("nocode", ["source.p.raw.cases"], code=""), "no compiled SQL"),
    (_model("keyed", ["model.p.other"], meta={"increment_keys": {"id": ["cases.id"]}}), "reads other models"),
    (_model("keyed", ["source.p.raw.forms"], meta={"increment_keys": {"id": ["cases.id"]}}), "names cases, which it does not read"),
    (_model("keyed", ["source.p.raw.forms", "source.p.raw.cases"], meta={"increment_keys": {"id": ["cases.id"]}}),
     "reads forms, which its increment_keys do not name"),
    (_model("keyed", ["source.p.raw.cases"], meta={"increment_keys": {"id": "cases.id"}}), "non-empty list"),
    (_model("keyed", ["source.p.raw.cases"], meta={"increment_keys": {"id": ["cases"]}}), "is not 'raw_table.column'"),
    (_model("keyed", ["source.p.raw.cases"], meta={"increment_keys": []}), "must map model columns"),
])
def test_what_cannot_be_applied_incrementally_says_why(model, why):
    other = _model("other", ["source.p.raw.cases"])
    with pytest.raises(PlanUnavailable, match=why):
        _plan(_manifest(model, other))


def test_a_model_read_from_another_schema_is_refused():
    manifest = _manifest(_model("a", ["source.p.raw.cases"]), _model("b", ["model.p.a"]))
    manifest["nodes"]["model.p.a"]["relation_name"] = _rel("elsewhere", "a")
    with pytest.raises(PlanUnavailable, match="not published"):
        plan_from_manifest(manifest, {})


def test_a_cycle_is_refused_and_a_missing_manifest_too():
    with pytest.raises(PlanUnavailable, match="cycle"):
        _plan(_manifest(_model("a", ["model.p.b"]), _model("b", ["model.p.a"])))
    with pytest.raises(PlanUnavailable, match="no nodes"):
        plan_from_manifest({}, {})
    with pytest.raises(PlanUnavailable, match="unreadable"):
        Plan.from_json({"steps": [{"name": "x"}]})


def test_keys_must_name_raw_columns_the_pipeline_declares():
    manifest = _manifest(_model("cases", ["source.p.raw.cases"], meta={"increment_keys": {"case_id": ["cases.case_id"]}}))
    table = Table(name="cases", description="d", primary_key=("case_id",),
                  columns=(Column(name="case_id", type="text", description="d"),))
    check_keys(_plan(manifest), [table])
    with pytest.raises(PlanUnavailable, match="not a column"):
        check_keys(_plan(manifest), [])


def test_published_relations_quote_like_dbt():
    manifest = _manifest(_model("cases", []))
    assert published_relations(manifest, 'we"ird', BUILD, LIVE) == {'"we""ird"."t__build"."cases"': '"we""ird"."t"."cases"'}


def test_fingerprints_change_with_any_part():
    base = fingerprint(["project", {"a": 1}, [("x", 1)]])
    assert base == fingerprint(["project", {"a": 1}, [["x", 1]]])
    assert base != fingerprint(["project", {"a": 2}, [("x", 1)]])
    assert base != fingerprint(["project", {"a": 1}, [("x", 1)], "db"])
