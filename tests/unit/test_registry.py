from pathlib import Path

import pytest
import yaml

from data_explorer.pipelines.registry import Pipeline, PipelineError, Registry, load_pipeline

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


def _write(tmp_path, data, name="commcare_sync"):
    path = tmp_path / f"{name}.yml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def _pipeline():
    return yaml.safe_load((PIPELINES / "commcare_sync.yml").read_text())


def test_the_shipped_pipeline_is_valid():
    pipeline = Registry.from_directory(PIPELINES).get("commcare_sync")
    assert [s.name for s in pipeline.sources] == ["cases", "forms", "users"]
    assert {m.name for m in pipeline.models} >= {"cases", "forms", "users", "case_types", "form_submissions"}
    assert all(c.description for m in pipeline.models for c in m.columns)


@pytest.mark.parametrize(
    "change, where, what",
    [
        (lambda d: d["sources"][1]["tables"][0]["columns"][3].update(type="texxt"), "sources[1].tables[0].columns[3].type", "not a supported type"),
        (lambda d: d["sources"][0].update(tablez=[]), "sources[0].tablez", "unknown key"),
        (lambda d: d["sources"][0].pop("loader"), "sources[0].loader", "required key is missing"),
        (lambda d: d["models"][0]["columns"][0].update(name="Case Id"), "models[0].columns[0].name", "pattern"),
        (lambda d: d["sources"][0]["tables"][0].update(primary_key=["nope"]), "sources[0].tables[0]", "nope"),
        (lambda d: d["relationships"][0].update(to="nothing.x"), "(top level)", "relationships[0]"),
        (lambda d: d.update(name="other"), "name", "must match the file name"),
    ],
)
def test_bad_files_are_reported_by_file_and_key(tmp_path, change, where, what):
    data = _pipeline()
    change(data)
    with pytest.raises(PipelineError) as err:
        load_pipeline(_write(tmp_path, data))
    message = str(err.value)
    assert message.startswith("commcare_sync.yml: ")
    assert where in message and what in message


def test_yaml_syntax_errors_give_the_line(tmp_path):
    with pytest.raises(PipelineError, match=r"commcare_sync.yml: not valid YAML at line 3"):
        load_pipeline(_write(tmp_path, "name: x\nsources: [a, b\nmodels: x\n"))


def test_registry_collects_every_bad_file(tmp_path):
    _write(tmp_path, "[]", "a")
    _write(tmp_path, "name: b\n", "b")
    with pytest.raises(PipelineError) as err:
        Registry.from_directory(tmp_path)
    assert "a.yml" in str(err.value) and "b.yml" in str(err.value)


def test_unknown_pipeline_names_the_available_ones():
    with pytest.raises(PipelineError, match="available: commcare_sync"):
        Registry.from_directory(PIPELINES).get("nope")


@pytest.mark.parametrize(
    "change, where, what",
    [
        (lambda d: d["sources"][0]["tables"][0]["columns"].pop(1), "sources[0].tables[0].columns (cases)", "missing case_type"),
        (lambda d: d["sources"][2]["tables"][0]["columns"].append({"name": "age", "type": "text", "description": "x"}),
         "sources[2].tables[0].columns (users)", "not produced by the loader: age"),
        (lambda d: d["sources"][1].update(loader="commcare.formz"), "sources[1].loader", "unknown loader 'commcare.formz'"),
        (lambda d: d["sources"][1]["tables"].pop(1), "sources[1].tables", "produces tables form_case_blocks, forms"),
        (lambda d: d["discover"]["tables"][2]["columns"].pop(3), "discover.tables[2].columns (form_definitions)", "missing app_name"),
    ],
)
def test_declared_tables_must_match_what_the_loaders_produce(tmp_path, change, where, what):
    from data_explorer.pipelines.bindings import check_bindings

    data = _pipeline()
    change(data)
    pipeline = load_pipeline(_write(tmp_path, data))
    with pytest.raises(PipelineError) as err:
        check_bindings(pipeline, "commcare_sync.yml")
    assert f"commcare_sync.yml: {where}" in str(err.value) and what in str(err.value)


def test_column_order_in_the_file_is_free():
    from data_explorer.pipelines.bindings import check_bindings

    data = _pipeline()
    data["sources"][0]["tables"][0]["columns"].reverse()
    pipeline = Pipeline.model_validate(data)
    check_bindings(pipeline, "commcare_sync.yml")
