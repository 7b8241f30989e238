"""Which question saves which case property, read from a form's XForm. Pure.

CommCare's app builder turns a form's case actions into the XForm it serves
(``corehq/apps/app_manager/xform.py``): each case block sits in the primary
instance at ``<path>/case``, and each property the form saves is a bind
``<bind nodeset="<path>/case/update/<property>" calculate="<question>"/>``,
the question's path absolute (``/data/dob``), relative to the bind in repeats
(``../../dob``) or as a form reference (``#form/dob``). A block that opens a
case names its type in ``create/case_type``; the block at the root
(``/data/case``) is the module's own case. Any other block's type the XForm
does not say (it comes from the session): such updates carry no case type.

A calculate that is not a plain path (an expression, a constant) saves no
question's answer and is left out. The XForm is untrusted text: a document
type declaration is refused (XForms have none; entities are how XML bombs
work), as is anything that is not well-formed XML.
"""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

_UPDATE = re.compile(r"^(?P<block>/.*)/case/update/(?P<property>[^/]+)$")
_STEP = r"(?:\.\.?|[A-Za-z_][A-Za-z0-9_.-]*)"
_PLAIN_PATH = re.compile(rf"^/?{_STEP}(?:/{_STEP})*$")  # steps of element names, ``.`` and ``..``; no expression
_FORM_REFERENCE = "#form/"


class XFormError(ValueError):
    """The text is not an XForm this module can read."""


@dataclass(frozen=True, order=True)
class CaseUpdate:
    case_type: str | None  # None: a block whose case type the XForm does not say
    property: str
    question: str  # absolute path of the question whose answer is saved


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _primary_instance(root: ET.Element) -> ET.Element | None:
    """The form's data element: the first child of the first ``instance`` without an ``id``."""
    for element in root.iter():
        if _local(element.tag) == "instance" and "id" not in element.attrib:
            children = list(element)
            return children[0] if children else None
    return None


def _child(element: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in element if _local(c.tag) == name), None)


def _at(data: ET.Element, path: str) -> ET.Element | None:
    """The instance element at an absolute path (``/data/members/case``), by local names."""
    steps = path.strip("/").split("/")
    if not steps or steps[0] != _local(data.tag):
        return None
    element: ET.Element | None = data
    for step in steps[1:]:
        element = _child(element, step) if element is not None else None
    return element


def _question_path(nodeset: str, calculate: str, root: str) -> str | None:
    """The absolute path a bind's calculate reads, or None when it is not a plain path."""
    value = calculate.strip()
    if value.startswith(_FORM_REFERENCE):
        value = f"/{root}/{value[len(_FORM_REFERENCE):]}"
    if not value or not _PLAIN_PATH.match(value):
        return None
    if not value.startswith("/"):  # relative to the bound node, as XPath reads it
        value = f"{nodeset}/{value}"
    resolved = posixpath.normpath(value)
    return resolved if resolved.startswith(f"/{root}/") else None


def case_updates(xform: bytes | str, module_case_type: str | None) -> list[CaseUpdate]:
    """Every case property the form saves from a question, sorted; XFormError when it cannot be read."""
    text = xform.decode("utf-8", "replace") if isinstance(xform, bytes) else xform
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise XFormError("the form's XML declares a document type; an XForm has none, so it is not read")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise XFormError(f"the form's XML is not well-formed ({exc})") from None
    data = _primary_instance(root)
    if data is None:
        raise XFormError("the form's XML has no primary instance (a model with an instance holding the form's data)")
    root_name = _local(data.tag)
    found: set[CaseUpdate] = set()
    for bind in root.iter():
        if _local(bind.tag) != "bind":
            continue
        nodeset, calculate = bind.get("nodeset") or "", bind.get("calculate")
        match = _UPDATE.match(nodeset)
        if not match or calculate is None:
            continue
        question = _question_path(nodeset, calculate, root_name)
        if question is None:
            continue
        block = match["block"]
        case_type_element = _at(data, f"{block}/case/create/case_type")
        case_type = (case_type_element.text or "").strip() if case_type_element is not None else ""
        if not case_type and block == f"/{root_name}":
            case_type = module_case_type or ""
        found.add(CaseUpdate(case_type or None, match["property"], question))
    return sorted(found, key=lambda u: (u.case_type or "", u.property, u.question))
