"""Form API records to rows of the raw ``forms`` and ``form_case_blocks`` tables. Pure.

A case block can sit anywhere in the form tree: any key ``case`` whose value is
an object carrying its case id, or a list of them (repeat groups are lists; a
repeat with one entry may be a plain object). CaseXML 2.0 carries the id as the
attribute ``@case_id``, CaseXML 1.0 as the element ``case_id`` (and the create
action's type as ``case_type_id``); CommCare reads both and, like CommCare
(``casexml/apps/case/xform.py``), a ``case`` element is never searched for
blocks inside it. One block can create, update, index and close at once: each
action becomes one row. Empty elements arrive as ``""``: an empty ``close``
still closes; an empty ``create``, ``index`` or ``update`` carries nothing (an
empty update is kept: it still touches the case).
"""

from __future__ import annotations

from typing import Any

from data_explorer.loaders import json_codec
from data_explorer.loaders.commcare.values import boolean, json_text, text
from data_explorer.loaders.errors import MalformedResponse
from data_explorer.loaders.timestamps import optional_timestamp, parse_timestamp

FORM_COLUMNS = (
    "form_id", "xmlns", "form_name", "app_id", "build_id", "received_on", "server_modified_on",
    "indexed_on", "archived", "user_id", "username", "time_start", "time_end", "device_id",
    "app_version", "form", "metadata",
)
FORM_INDEXED_ON = FORM_COLUMNS.index("indexed_on")  # a row's place of the incremental cursor's instant, parsed
BLOCK_COLUMNS = ("form_id", "block_index", "path", "case_id", "action", "case_type", "payload")
ACTIONS = ("create", "update", "index", "close")
MAX_DEPTH = 64  # form trees are shallow; a deeper one is hostile


def form_id_of(form: dict[str, Any]) -> str:
    form_id = form.get("id")
    if not isinstance(form_id, str) or not form_id:
        raise MalformedResponse(f"Form API: a form has no id (keys: {', '.join(sorted(form)[:10])})")
    return form_id


def form_row(form: dict[str, Any]) -> tuple:
    form_id = form_id_of(form)
    record = f"form {form_id}"
    tree = form.get("form")
    if not isinstance(tree, dict):
        raise MalformedResponse(f"{record}: 'form' is {type(tree).__name__}, expected the form tree object")
    meta = form.get("metadata") if isinstance(form.get("metadata"), dict) else {}
    indexed_on = parse_timestamp(form.get("indexed_on"), "indexed_on", record)
    return (
        form_id,
        text(tree.get("@xmlns"), "form.@xmlns", record),
        text(tree.get("@name"), "form.@name", record),
        text(form.get("app_id"), "app_id", record),
        text(form.get("build_id"), "build_id", record),
        optional_timestamp(form.get("received_on"), "received_on", record),
        optional_timestamp(form.get("server_modified_on"), "server_modified_on", record),
        indexed_on,
        boolean(form.get("archived"), "archived", record, default=False),
        text(meta.get("userID"), "metadata.userID", record),
        text(meta.get("username"), "metadata.username", record),
        optional_timestamp(meta.get("timeStart"), "metadata.timeStart", record),
        optional_timestamp(meta.get("timeEnd"), "metadata.timeEnd", record),
        text(meta.get("deviceID"), "metadata.deviceID", record),
        text(meta.get("appVersion"), "metadata.appVersion", record),
        json_codec.dumps(tree),
        json_text(form.get("metadata"), "metadata", record),
    )


def find_case_blocks(tree: Any, path: str = "form") -> list[tuple[str, dict[str, Any]]]:
    """(path, block) for every case block in document order."""
    found: list[tuple[str, dict[str, Any]]] = []
    _collect_blocks(tree, path, 0, found)
    return found


def _collect_blocks(tree: Any, path: str, depth: int, found: list) -> None:
    # most values in a form tree are answers (text): they are passed over first, and paths are
    # built only for containers and blocks
    if depth > MAX_DEPTH:
        raise MalformedResponse(f"form tree deeper than {MAX_DEPTH} levels at {path}")
    if isinstance(tree, dict):
        for key, value in tree.items():
            if value.__class__ is str:
                continue
            if key == "case":  # a block, or a repeat of them; nothing inside is searched further
                if _is_block(value):
                    found.append((f"{path}.{key}", value))
                elif isinstance(value, list):
                    found.extend((f"{path}.{key}[{i}]", item) for i, item in enumerate(value) if _is_block(item))
            elif isinstance(value, (dict, list)):
                _collect_blocks(value, f"{path}.{key}", depth + 1, found)
    elif isinstance(tree, list):
        for i, item in enumerate(tree):
            if isinstance(item, (dict, list)):
                _collect_blocks(item, f"{path}[{i}]", depth + 1, found)


def _is_block(value: Any) -> bool:
    return isinstance(value, dict) and ("@case_id" in value or "case_id" in value)


def case_id_of(block: dict[str, Any]) -> Any:
    """The block's case id: the 2.0 attribute where there is one (as CommCare decides the version), else
    the 1.0 element."""
    return block["@case_id"] if "@case_id" in block else block.get("case_id")


def _index_payload(index: dict[str, Any]) -> dict[str, Any]:
    """{"parent": {"@case_type": t, "#text": id, "@relationship": r}} -> {"parent": {case_id, case_type, relationship}}."""
    out = {}
    for name, ref in index.items():
        if isinstance(ref, dict):
            out[name] = {
                "case_id": ref.get("#text") or None,
                "case_type": ref.get("@case_type"),
                "relationship": ref.get("@relationship") or "child",
            }
        elif isinstance(ref, str):
            out[name] = {"case_id": ref or None, "case_type": None, "relationship": "child"}
    return out


def block_actions(block: dict[str, Any]) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(action, case_type, payload) for each action in a case block, in the order of ``ACTIONS``;
    case_type is the create action's, when it is text."""
    actions = []
    create = block.get("create")
    case_type = None
    if isinstance(create, dict):
        case_type = create.get("case_type", create.get("case_type_id"))  # 2.0, else 1.0
        if not isinstance(case_type, str):
            case_type = None
        if create:
            actions.append(("create", case_type, create))
    if "update" in block:
        update = block["update"]
        if isinstance(update, dict) or update == "" or update is None:
            actions.append(("update", case_type, update or {}))
    index = block.get("index")
    if isinstance(index, dict) and index:
        actions.append(("index", case_type, _index_payload(index)))
    if "close" in block:
        actions.append(("close", case_type, {}))
    return actions


def block_rows(form_id: str, tree: dict[str, Any]) -> list[tuple]:
    rows = []
    for block_index, (path, block) in enumerate(find_case_blocks(tree)):
        case_id = case_id_of(block)
        if not isinstance(case_id, str) or not case_id:
            field = "@case_id" if "@case_id" in block else "case_id"
            raise MalformedResponse(f"form {form_id}: case block at {path} has {field} {case_id!r}")
        for action, case_type, payload in block_actions(block):
            rows.append((form_id, block_index, path, case_id, action, case_type, json_codec.dumps(payload)))
    return rows
