"""Discover: Application API definitions to tenant metadata. Pure apart from the two ``fetch_`` functions.

The metadata names every case type with its properties and every form
definition with its questions. A form definition is an xmlns in an app: a
copied app keeps its forms' xmlns, so forms are keyed by (app id, xmlns).

A module's ``case_properties`` come from CommCare's app builder
(``get_all_case_properties``): it adds ``name``, which is the case name (a
column of its own), and the properties of indexed cases as paths
(``parent/village``), which belong to the case the index points to. Neither is
a property of the module's case type, so both are left out.

A property is labelled from the question that saves it. The Application API
does not say which one: its ``extras=true`` dumps the application document,
but the document's modules, where the form actions live, are replaced by the
simplified ones (``ApplicationResource.dehydrate`` in
``corehq/apps/api/resources/v0_4.py``). The form's XForm does: CommCare serves
it at ``/a/{domain}/apps/download/{app_id}/modules-{m}/forms-{f}.xml``
(``download_xform``), rendered from the app as the API lists it, with a bind
per property the form saves (``xforms``). Its labels are exact. A form whose
XForm cannot be read (an app that fails to build, a server that refuses)
labels the properties of its module's case type from its questions named as
the property, and discover warns that those labels are a guess.

The working app's ``version`` goes up with every save (``ApplicationBase.save``),
so a form's case updates read at one version are reused by incremental runs
until the app changes; a full run reads them all again.

A module that failed to serialise (``{"error": ...}``) is skipped with a
warning, not a failure.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from typing import Any, Callable

from data_explorer.loaders.commcare.client import CommCareClient
from data_explorer.loaders.commcare.xforms import XFormError, case_updates
from data_explorer.loaders.errors import Cancelled, LoaderError, MalformedResponse, RetriesExhausted

FORM_DEFINITION_COLUMNS = (
    "xmlns", "form_name", "app_id", "app_name", "module_name", "case_type", "questions", "app_version", "case_updates",
)
XFORM_LIMIT = 10_000_000  # bytes of one form's XForm read at most; the largest real ones are a few hundred kB
_APP_ID = re.compile(r"^[\w-]+$")  # what CommCare's download URLs accept as an app id

FormKey = tuple[str, str]  # (app id, xmlns)
Reuse = dict[FormKey, tuple[int, list[dict[str, Any]]]]  # case updates read before, at an app version


def fetch_applications(client: CommCareClient, domain: str) -> list[dict[str, Any]]:
    body = client.get_json(f"/a/{domain}/api/v0.5/application/", what="Application API")
    apps = body.get("objects")
    if not isinstance(apps, list) or not all(isinstance(a, dict) for a in apps):
        raise MalformedResponse("Application API: the response has no 'objects' list of apps")
    return apps


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def xform_url(domain: str, app_id: str, module: int, form: int) -> str:
    return f"/a/{domain}/apps/download/{app_id}/modules-{module}/forms-{form}.xml"


def fetch_case_updates(client: CommCareClient, domain: str, apps: list[dict[str, Any]], reuse: Reuse,
                       on_form: Callable[[int], None] | None = None) -> tuple[dict[FormKey, list[dict[str, Any]]], list[str]]:
    """Each form's case updates (case type, property, question path) from its XForm, reusing ``reuse`` where the
    app's version is unchanged; and a warning per app with forms that could not be read."""
    found: dict[FormKey, list[dict[str, Any]]] = {}
    warnings: list[str] = []
    read = 0
    gave_up: str | None = None  # retries ran out: the server is not answering, so no more forms are asked for
    for app in apps:
        app_id, version = app.get("id"), app.get("version")
        if not isinstance(app_id, str):
            continue
        name = translated(app.get("name")) or app_id
        failed: list[str] = []
        for m, module in enumerate(_list(app.get("modules"))):
            if not isinstance(module, dict) or "error" in module:
                continue
            case_type = module.get("case_type") if isinstance(module.get("case_type"), str) else None
            for f, form in enumerate(_list(module.get("forms"))):
                if not isinstance(form, dict) or not isinstance(form.get("xmlns"), str):
                    continue
                key = (app_id, form["xmlns"])
                kept = reuse.get(key)
                if kept is not None and isinstance(version, int) and kept[0] == version:
                    found[key] = kept[1]
                    continue
                if gave_up is not None:
                    failed.append(gave_up)
                    continue
                if not _APP_ID.match(app_id):
                    failed.append(f"{form['xmlns']}: the app id is not one CommCare's download URLs accept")
                    continue
                try:
                    xml = client.get_document(xform_url(domain, app_id, m, f), what=f"form XML of {form['xmlns']}",
                                              limit=XFORM_LIMIT)
                    found[key] = [asdict(u) for u in case_updates(xml, case_type)]
                except Cancelled:
                    raise
                except RetriesExhausted as exc:
                    failed.append(gave_up := str(exc))
                except LoaderError as exc:
                    failed.append(str(exc))
                except XFormError as exc:
                    failed.append(f"form XML of {form['xmlns']}: {exc}")
                read += 1
                if on_form is not None:
                    on_form(read)
        if failed:
            warnings.append(
                f"app {name!r}: the XML of {len(failed)} form(s) could not be read, so properties they save are "
                f"labelled from a question named as the property, a guess (first: {failed[0][:300]})"
            )
    return found, warnings


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


def build_metadata(domain: str, apps: list[dict[str, Any]],
                   updates: dict[FormKey, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Metadata of ``apps``; ``updates`` are the forms' case updates (``fetch_case_updates``), where known."""
    updates = updates or {}
    warnings: list[str] = []
    case_types: dict[str, dict[str, Any]] = {}
    forms: dict[tuple[str, str], dict[str, Any]] = {}
    app_summaries = []
    for app in apps:
        app_id, app_name = app.get("id"), translated(app.get("name")) or app.get("id")
        if not isinstance(app_id, str):
            warnings.append("an app without an id was skipped")
            continue
        modules = _list(app.get("modules"))
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
                for prop in _list(module.get("case_properties")):
                    if own_property(prop):
                        entry["properties"].setdefault(prop, {"label": None, "question": None, "type": None})
            for form in _list(module.get("forms")):
                if not isinstance(form, dict) or not isinstance(form.get("xmlns"), str):
                    continue
                form_count += 1
                questions = [_question(q) for q in _list(form.get("questions")) if isinstance(q, dict)]
                forms[(app_id, form["xmlns"])] = {
                    "xmlns": form["xmlns"],
                    "name": translated(form.get("name")),
                    "app_id": app_id,
                    "app_name": app_name,
                    "module_name": module_name,
                    "case_type": case_type,
                    "questions": questions,
                    "app_version": app.get("version") if isinstance(app.get("version"), int) else None,
                    "case_updates": updates.get((app_id, form["xmlns"])),
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
    """Label each property from the question that saves it, its own module's forms first; from a question
    named as the property only in forms whose case updates are unknown. An update whose case type the XForm
    does not say labels the one case type that has the property, if only one has it."""
    owners: dict[str, list[str]] = {}
    for case_type, entry in case_types.items():
        for prop in entry["properties"]:
            owners.setdefault(prop, []).append(case_type)
    for own_module in (True, False):  # a property is labelled by its own module's forms first
        for form in forms:
            if form.get("case_updates") is None:
                continue
            by_path = {q["path"]: q for q in form["questions"]}
            for update in form["case_updates"]:
                types = [update["case_type"]] if update["case_type"] else owners.get(update["property"], [])
                if len(types) == 1 and (types[0] == form["case_type"]) == own_module:
                    _label(case_types.get(types[0]), update["property"], by_path.get(update["question"]))
    for form in forms:
        if form.get("case_updates") is None:
            for q in form["questions"]:
                _label(case_types.get(form["case_type"] or ""), _leaf(q["path"]), q)


def _label(entry: dict[str, Any] | None, name: str | None, question: dict[str, Any] | None) -> None:
    prop = entry["properties"].get(name or "") if entry else None
    if prop is not None and prop["label"] is None and question is not None and question["label"]:
        prop["label"], prop["question"], prop["type"] = question["label"], question["path"], question["type"]


def form_definition_rows(metadata: dict[str, Any]) -> list[tuple]:
    return [
        (f["xmlns"], f["name"], f["app_id"], f["app_name"], f["module_name"], f["case_type"],
         json.dumps(f["questions"], ensure_ascii=False), f.get("app_version"),
         # keys sorted: updates reused from jsonb come back in its key order, and the rows fingerprint the plan
         None if f.get("case_updates") is None else json.dumps(f["case_updates"], ensure_ascii=False, sort_keys=True))
        for f in metadata["forms"]
    ]
