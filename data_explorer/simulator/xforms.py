"""A form's XForm as CommCare's app builder renders it (``download_xform``), derived from ``schema``.

Each case slot becomes a case block at ``<group>/case`` in the primary
instance; a slot that opens cases (it names the case or indexes another) has
``create/case_type``. Each property the slot saves is a bind from
``<group>/case/update/<property>`` to the question holding it, written the
three ways CommCare writes them: absolute at the top level (``/data/dob``),
relative inside a repeat (``../../../dob``), as a form reference elsewhere
(``#form/visit_details/visit_date``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from data_explorer.simulator.schema import CASE_XMLNS, CaseSlot, FormKind, Group, Question, question_id

_H = "{http://www.w3.org/1999/xhtml}"
_X = "{http://www.w3.org/2002/xforms}"
_TYPES = {"Int": "xsd:int", "Decimal": "xsd:decimal", "Date": "xsd:date"}


class _Writer:
    def __init__(self, kind: FormKind, model: ET.Element, renamed: bool):
        self.ns = "{" + kind.xmlns + "}"
        self.model, self.renamed = model, renamed

    def bind(self, **attributes: str) -> None:
        ET.SubElement(self.model, _X + "bind", attributes)

    def nodes(self, nodes: tuple, parent: ET.Element, body: ET.Element, prefix: str, in_repeat: bool) -> None:
        for node in nodes:
            if isinstance(node, Question):
                name = question_id(node.name, self.renamed)
                ET.SubElement(parent, self.ns + name)
                path = f"{prefix}/{name}"
                binding = {"nodeset": path, "type": _TYPES.get(node.type, "xsd:string")}
                if node.calculate is not None:
                    binding["calculate"] = f"'{node.calculate}'"
                if node.required:
                    binding["required"] = "true()"
                self.bind(**binding)
                if node.calculate is None:
                    control = ET.SubElement(body, _X + ("select1" if node.options else "input"), {"ref": path})
                    ET.SubElement(control, _X + "label").text = node.label
            elif isinstance(node, Group):
                path = f"{prefix}/{node.name}"
                self.nodes(node.children, ET.SubElement(parent, self.ns + node.name), self._group(body, node, path),
                           path, in_repeat or node.repeat)
            elif isinstance(node, CaseSlot):
                self.case_block(node, parent, prefix, in_repeat)

    @staticmethod
    def _group(body: ET.Element, group: Group, path: str) -> ET.Element:
        element = ET.SubElement(body, _X + "group", {"ref": path})
        ET.SubElement(element, _X + "label").text = group.label
        return ET.SubElement(element, _X + "repeat", {"nodeset": path}) if group.repeat else element

    def case_block(self, slot: CaseSlot, parent: ET.Element, prefix: str, in_repeat: bool) -> None:
        case = ET.SubElement(parent, f"{{{CASE_XMLNS}}}case", {"case_id": "", "date_modified": "", "user_id": ""})
        block = f"{prefix}/case"
        if slot.name_from is not None or slot.index is not None:
            create = ET.SubElement(case, f"{{{CASE_XMLNS}}}create")
            for name in ("case_name", "owner_id"):
                ET.SubElement(create, f"{{{CASE_XMLNS}}}{name}")
            ET.SubElement(create, f"{{{CASE_XMLNS}}}case_type").text = slot.case_type
            if slot.name_from is not None:
                self.bind(nodeset=f"{block}/create/case_name", calculate=self.reference(slot.name_from, prefix, in_repeat))
        update = ET.SubElement(case, f"{{{CASE_XMLNS}}}update")
        for prop in slot.update:
            ET.SubElement(update, f"{{{CASE_XMLNS}}}{prop}")
            question = self.reference(prop, prefix, in_repeat)
            self.bind(nodeset=f"{block}/update/{prop}", calculate=question, relevant=f"count({question}) > 0")

    def reference(self, name: str, prefix: str, in_repeat: bool) -> str:
        """How a bind in the block at ``prefix`` names the question of ``prefix`` holding ``name``."""
        question = question_id(name, self.renamed)
        if prefix == "/data":
            return f"/data/{question}"
        if in_repeat:  # from <prefix>/case/update/<property> back up to <prefix>
            return f"../../../{question}"
        return f"#form/{prefix[len('/data/'):]}/{question}"


def render_xform(kind: FormKind, version: int, renamed: bool) -> bytes:
    html = ET.Element(_H + "html")
    head = ET.SubElement(html, _H + "head")
    ET.SubElement(head, _H + "title").text = kind.name
    model = ET.SubElement(head, _X + "model")
    instance = ET.SubElement(model, _X + "instance")
    writer = _Writer(kind, model, renamed)
    data = ET.SubElement(instance, writer.ns + "data", {"uiVersion": "1", "version": str(version), "name": kind.name})
    ET.SubElement(model, _X + "instance", {"id": "commcaresession", "src": "jr://instance/session"})
    body = ET.SubElement(html, _H + "body")
    writer.nodes(kind.tree, data, body, "/data", False)
    return ET.tostring(html, encoding="utf-8", xml_declaration=True)
