"""Application definitions of one project space, derived from ``schema``: what the discover phase reads.

Each module lists exactly the properties its case type carries, and each form
every question (and group) its submissions contain, with English and French
labels. With ``property_paths`` a module also lists ``name`` and the properties
of the case its cases index (``parent/village``, ``host/dob``), as CommCare's
app builder does. With ``copied_app`` a copy of the first app follows the
others: its own id and builds, the same modules and form xmlns.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from data_explorer.simulator.config import DomainConfig
from data_explorer.simulator.schema import (
    APPS, CASE_PROPERTIES, FORM_KINDS, App, CaseSlot, FormKind, Group, Question, questions,
)
from data_explorer.simulator.synth import DAY_US, fmt_naive, make_tag, record_id
from data_explorer.simulator.xforms import render_xform

RELEASED_BUILDS = 3  # builds listed in ``versions``, the newest released


COPY = len(APPS)  # the index of the copied app, when there is one
COPIED = 0  # the app it is a copy of


def _indexed_types() -> dict[str, tuple[str, str]]:
    """case type -> (index name, case type it points to), from the case slots of every form."""
    found: dict[str, tuple[str, str]] = {}

    def walk(nodes: tuple) -> None:
        for node in nodes:
            if isinstance(node, CaseSlot) and node.index is not None:
                found[node.case_type] = (node.index.name, node.index.case_type)
            elif isinstance(node, Group):
                walk(node.children)

    for kind in FORM_KINDS:
        walk(kind.tree)
    return found


INDEXED_TYPES = _indexed_types()


def listed_properties(case_type: str, with_paths: bool) -> list[str]:
    """A module's ``case_properties``: the case type's own, and with ``with_paths`` what CommCare's app
    builder adds: ``name`` and the indexed case's properties under the index name."""
    own = list(CASE_PROPERTIES[case_type])
    if not with_paths:
        return own
    paths = []
    if case_type in INDEXED_TYPES:
        index, target = INDEXED_TYPES[case_type]
        paths = [f"{index}/{p}" for p in CASE_PROPERTIES[target]]
    return sorted(["name", *own, *paths])


class AppSet:
    def __init__(self, seed: int, config: DomainConfig, built: int):
        self.domain = config.name
        self.seed = seed
        self.property_paths = config.property_paths
        self.renamed = config.renamed_questions
        tag, build_tag, unique = (make_tag(seed, self.domain, k) for k in ("app", "build", "unique"))
        apps = list(APPS)
        if config.copied_app:
            original = APPS[COPIED]
            apps.append(replace(original, key=original.key + "_copy", name=original.name + " (copy)", version=3))
        self.ids = [record_id(tag, k) for k in range(len(apps))]
        self.build_ids = [record_id(build_tag, k * 1000 + app.version) for k, app in enumerate(apps)]
        self.versions = [app.version for app in apps]
        self._apps = apps
        self._unique = unique
        self._built = built
        self.objects = [self._app(k, app) for k, app in enumerate(apps)]
        self.by_id = {obj["id"]: obj for obj in self.objects}

    def json(self, app_id: str | None = None) -> bytes | None:
        """The list envelope (app_id None), or one app; None when there is no such app."""
        if app_id is not None:
            obj = self.by_id.get(app_id)
            return None if obj is None else json.dumps(obj, ensure_ascii=False).encode()
        meta = {"limit": None, "next": None, "offset": 0, "previous": None, "total_count": len(self.objects)}
        return json.dumps({"meta": meta, "objects": self.objects}, ensure_ascii=False).encode()

    def xform(self, app_id: str, module: int, form: int) -> bytes | None:
        """A form's XForm by the app's id and the module's and form's positions; None when there is none."""
        try:
            app = self._apps[self.ids.index(app_id)]
            kind = app.modules[module].forms[form]
        except (ValueError, IndexError):
            return None
        return render_xform(kind, app.version, self.renamed)

    def _uid(self, *parts: int) -> str:
        return record_id(self._unique, sum(p << (10 * k) for k, p in enumerate(parts)))

    def _app(self, k: int, app: App) -> dict[str, Any]:
        build_tag = make_tag(self.seed, self.domain, f"build-{k}")
        versions = [
            {
                "build_comment": f"Build {v}",
                "id": self.build_ids[k] if v == app.version else record_id(build_tag, v),
                "built_on": fmt_naive(self._built - (app.version - v) * 7 * DAY_US),
                "is_released": v == app.version,
                "version": v,
            }
            for v in range(app.version - RELEASED_BUILDS + 1, app.version + 1)
        ]
        return {
            "build_comment": None,
            "built_from_app_id": None,
            "built_on": None,
            "id": self.ids[k],
            "is_released": True,
            "modules": [
                {
                    "case_properties": listed_properties(module.case_type, self.property_paths),
                    "case_type": module.case_type,
                    "forms": [self._form(kind, k, m, f) for f, kind in enumerate(module.forms)],
                    "name": {"en": module.name, "fr": module.name_fr},
                    "unique_id": self._uid(k, m, 0, 1),
                }
                for m, module in enumerate(app.modules)
            ],
            "name": app.name,
            "version": app.version,
            "versions": versions,
        }

    def _form(self, kind: FormKind, app: int, module: int, form: int) -> dict[str, Any]:
        return {
            "name": {"en": kind.name, "fr": kind.name_fr},
            "questions": [
                _question(path, node, repeat, group) for path, node, repeat, group in questions(kind.tree, renamed=self.renamed)
            ],
            "unique_id": self._uid(app, module, form + 1, 2),
            "xmlns": kind.xmlns,
        }


def _question(path: str, node: Question | Group, repeat: str | None, group: str | None) -> dict[str, Any]:
    if isinstance(node, Group):
        tag, type_, options, required, calculate = ("repeat" if node.repeat else "group"), ("Repeat" if node.repeat else "Group"), (), False, None
    else:
        tag, type_, options, required, calculate = node.tag, node.type, node.options, node.required, node.calculate
    return {
        "calculate": None if calculate is None else f"'{calculate}'",
        "comment": None,
        "group": group,
        "hashtagValue": "#form" + path[len("/data"):],
        "label": node.label,
        "options": [{"label": en, "translations": {"en": en, "fr": fr}, "value": v} for v, en, fr in options],
        "relevant": None,
        "repeat": repeat,
        "required": required,
        "tag": tag,
        "translations": {"en": node.label, "fr": node.label_fr},
        "type": type_,
        "value": path,
    }
