"""Discover: Application API definitions to tenant metadata. Pure apart from ``fetch_applications``.

The metadata names every case type with its properties and every form
definition with its questions. A form definition is an xmlns in an app: a
copied app keeps its forms' xmlns, so forms are keyed by (app id, xmlns).

A module's ``case_properties`` come from CommCare's app builder
(``get_all_case_properties``): it adds ``name``, which is the case name (a
column of its own), and the properties of indexed cases as paths
(``parent/village``), which belong to the case the index points to. Neither is
a property of the module's case type, so both are left out.

A property is labelled from a question of a form of its case type whose id
(the last step of its path) is the property name. That is a guess: the
Application API does not say which question saves which property. Its
``extras=true`` dumps the application document, but the document's modules,
where the form actions live, are replaced by the simplified ones
(``ApplicationResource.dehydrate`` in ``corehq/apps/api/resources/v0_4.py``).

A module that failed to serialise (``{"error": ...}``) is skipped with a
warning, not a failure.
"""

from __future__ import annotations

import json
from typing import Any

from data_explorer.loaders.commcare.client import CommCareClient
from data_explorer.loaders.errors import MalformedResponse

FORM_DEFINITION_COLUMNS = ("xmlns", "form_name", "app_id", "app_name", "module_name", "case_type", "questions")


def fetch_applications(client: CommCareClient, domain: str) -> list[dict[str, Any]]:
    body = client.get_json(f"/a/{domain}/api/v0.5/application/", what="Application API")
    apps = body.get("objects")
    if not isinstance(apps, list) or not all(isinstance(a, dict) for a in apps):
        raise MalformedResponse("Application API: the response has no 'objects' list of apps")
    return apps


def translated(value: Any) -> str | None:
    """A label that may be a string or a {"en": ..., "fr": ...} mapping; English first."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value:
        for lang in ("en", *sorted(value)):
            if isinstance(value.get(lang), str):
                return value[lang]
    return None


def _question(q: dict[str, Any]) -> dict[str, Any]:
    options = [
        {"value": o.get("value"), "label": translated(o.get("label"))}
        for o in q.get("options") or []
        if isinstance(o, dict)
    ]
    return {
        "path": q.get("value"),
        "label": translated(q.get("label")) or translated(q.get("translations")),
        "type": q.get("type"),
        "repeat": q.get("repeat") or None,
        "group": q.get("group") or None,
        "options": options,
    }


def _leaf(path: Any) -> str | None:
    return path.rstrip("/").rsplit("/", 1)[-1] if isinstance(path, str) and path else None


def own_property(prop: Any) -> bool:
    """Whether a listed case property is one of the case type's own: not ``name`` (the case name) and not
    a path through an index (``parent/village``: a property of the indexed case; a name of its own
    cannot hold ``/``, an XML element name)."""
    return isinstance(prop, str) and bool(prop) and prop != "name" and "/" not in prop


def build_metadata(domain: str, apps: list[dict[str, Any]]) -> dict[str, Any]:
    warnings: list[str] = []
    case_types: dict[str, dict[str, Any]] = {}
    forms: dict[tuple[str, str], dict[str, Any]] = {}
    app_summaries = []
    for app in apps:
        app_id, app_name = app.get("id"), translated(app.get("name")) or app.get("id")
        if not isinstance(app_id, str):
            warnings.append("an app without an id was skipped")
            continue
        modules = app.get("modules") if isinstance(app.get("modules"), list) else []
        form_count = 0
        for m_index, module in enumerate(modules):
            if not isinstance(module, dict) or "error" in module:
                reason = module.get("error") if isinstance(module, dict) else "not an object"
                warnings.append(f"app {app_name!r} module {m_index} was skipped: {reason}")
                continue
            module_name = translated(module.get("name"))
            case_type = module.get("case_type") or None
            if isinstance(case_type, str) and case_type:
                entry = case_types.setdefault(case_type, {"properties": {}, "apps": [], "modules": []})
                if {"id": app_id, "name": app_name} not in entry["apps"]:
                    entry["apps"].append({"id": app_id, "name": app_name})
                entry["modules"].append(module_name)
                for prop in module.get("case_properties") or []:
                    if own_property(prop):
                        entry["properties"].setdefault(prop, {"label": None, "question": None, "type": None})
            for form in module.get("forms") or []:
                if not isinstance(form, dict) or not isinstance(form.get("xmlns"), str):
                    continue
                form_count += 1
                questions = [_question(q) for q in form.get("questions") or [] if isinstance(q, dict)]
                forms[(app_id, form["xmlns"])] = {
                    "xmlns": form["xmlns"],
                    "name": translated(form.get("name")),
                    "app_id": app_id,
                    "app_name": app_name,
                    "module_name": module_name,
                    "case_type": case_type,
                    "questions": questions,
                }
        app_summaries.append(
            {"id": app_id, "name": app_name, "version": app.get("version"), "modules": len(modules), "forms": form_count}
        )
    listed = [forms[key] for key in sorted(forms)]
    _label_properties(case_types, listed)
    return {"provider": "commcare", "domain": domain, "apps": app_summaries, "case_types": case_types, "forms": listed,
            "warnings": warnings}


def form_entries(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """The form definitions of metadata, each with its xmlns and app id; metadata saved before forms were
    keyed by app kept them in an object by xmlns."""
    forms = metadata.get("forms") or []
    if isinstance(forms, dict):
        return [{"xmlns": xmlns, **form} for xmlns, form in sorted(forms.items())]
    return forms


def _label_properties(case_types: dict[str, dict[str, Any]], forms: list[dict[str, Any]]) -> None:
    for form in forms:
        entry = case_types.get(form["case_type"] or "")
        if not entry:
            continue
        for q in form["questions"]:
            prop = entry["properties"].get(_leaf(q["path"]) or "")
            if prop is not None and prop["label"] is None and q["label"]:
                prop["label"], prop["question"], prop["type"] = q["label"], q["path"], q["type"]


def form_definition_rows(metadata: dict[str, Any]) -> list[tuple]:
    return [
        (f["xmlns"], f["name"], f["app_id"], f["app_name"], f["module_name"], f["case_type"],
         json.dumps(f["questions"], ensure_ascii=False))
        for f in metadata["forms"]
    ]
