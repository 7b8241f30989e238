"""Comments for the published tables and views: from the pipeline for its models, from
the app definitions for the typed views. Pure; applied with bound literals at publish."""

from __future__ import annotations

from data_explorer.pipelines.registry import Pipeline
from data_explorer.warehouse.publish import Comment


def _property_comment(case_type: str, prop: str, data_type: str, label: str | None, question: str | None) -> str:
    text = f"{label} — " if label else ""
    text += f"case property '{prop}' of case type '{case_type}'"
    if question:
        text += f", saved by question {question}"
    if data_type != "text":
        text += f"; read as {data_type} (null where the stored text is not a valid {data_type})"
    return text


def table_comments(pipeline: Pipeline, definitions: list[tuple], properties: list[tuple]) -> list[Comment]:
    comments: list[Comment] = []
    for model in pipeline.models:
        comments.append((model.name, None, model.description))
        comments.extend((model.name, c.name, c.description) for c in model.columns)
    views = pipeline.case_type_views
    if not views:
        return comments
    base = {c.name: c.description for c in pipeline.model(views.source_model).columns}
    for case_type, view_name, *_ in definitions:
        comments.append((view_name, None, views.description.replace("{case_type}", case_type)))
        comments.extend((view_name, column, text) for column, text in base.items())
    for case_type, prop, column, data_type, label, question in properties:
        view_name = next(d[1] for d in definitions if d[0] == case_type)
        comments.append((view_name, column, _property_comment(case_type, prop, data_type, label, question)))
    return comments
