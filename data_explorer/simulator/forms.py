"""The forms of one project space: generated from (seed, domain, number), in submission order.

Base form ``j`` is of kind ``FORM_KINDS[j % 7]`` and concerns family
``(j // 7) % families`` of the base cases: its case blocks name real cases of
that family (the household, one to three patients, their visits). Forms added
later (``FormSpace.add``) are kept as small descriptors in a tail. Every third
pair of forms shares one timestamp; ``received_on``, ``indexed_on`` and
``server_modified_on`` all grow with the position, so date filters become
position ranges. Base form ``j`` is archived when ``j % 53 == 52``. Forms
are submitted by the case owners (``users``): mobile workers, deactivated ones
among them, and web users. With the space's ``copied_app`` every odd-numbered
form of the first app's kinds comes from its copy; with ``casexml_v1`` the
Update Household forms write CaseXML 1.0 blocks.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from data_explorer.simulator.apps import COPIED, COPY
from data_explorer.simulator.cases import CaseSpace
from data_explorer.simulator.config import DomainConfig
from data_explorer.simulator.pools import UTF8, Value, esc
from data_explorer.simulator.schema import (
    APP_OF_KIND, CASE_XMLNS, FAMILY, FORM_KINDS, HOST_SLOT, META_XMLNS, PATIENT_SLOTS, SLOT_TYPES, VISIT_SLOTS, CaseSlot,
    Group, Question, parent_index, value,
)
from data_explorer.simulator.synth import MASK64, US, fmt_naive, fmt_ts, make_tag, mix64, record_id, stable_hash

ARCHIVE_EVERY = 53  # base form j is archived when j % 53 == 52
V1_KINDS = ("update_household",)  # the kinds whose case blocks are CaseXML 1.0 when the space says so
KIND_INDEX = {kind.key: k for k, kind in enumerate(FORM_KINDS)}
_SALTS: dict[str, int] = {}


def _salt(name: str) -> int:
    salt = _SALTS.get(name)
    if salt is None:
        salt = _SALTS[name] = stable_hash("question", name)
    return salt


def _sub(h: int, salt: int) -> int:
    return (((h ^ salt) * 0x9E3779B97F4A7C15) & MASK64) >> 7


@dataclass(frozen=True)
class FormDesc:
    """Everything that varies between forms; the rest derives from the number's hash."""

    number: int
    kind: int  # index into FORM_KINDS
    roles: tuple[tuple[str, tuple[int, ...]], ...]  # case indices bound to each case slot role
    created: frozenset[int]  # cases this form creates
    received: int
    indexed: int
    server: int
    archived: bool
    user: int  # index of the mobile worker who submitted it

    def case_indices(self) -> set[int]:
        return {i for _, indices in self.roles for i in indices}


class FormSpace:
    def __init__(self, seed: int, config: DomainConfig, cases: CaseSpace, app_ids: list[str],
                 build_ids: list[str], app_versions: list[int], users: list[tuple[str, str]], start: int, span: int):
        domain = self.domain = config.name
        n_base = self.n_base = config.form_count
        self.tag = make_tag(seed, domain, "form")
        self.salt = stable_hash(seed, domain, "form")
        self.copied_app = config.copied_app
        self.casexml_v1 = config.casexml_v1
        self.cases = cases
        self.families = max(cases.n_base // FAMILY, 1)
        self.app_ids, self.build_ids, self.app_versions = app_ids, build_ids, app_versions
        self.users = users  # (user id, username) of who submits: the case owners
        self.start = start
        self.spacing = max(4000, span // max(n_base, 1) // 1000 * 1000)  # whole milliseconds
        self.tail: list[FormDesc] = []

    @property
    def positions(self) -> int:
        return self.n_base + len(self.tail)

    def form_id(self, number: int) -> str:
        return record_id(self.tag, number)

    # --- base forms -----------------------------------------------------------------------

    def _times(self, j: int) -> tuple[int, int, int]:
        pair_hash = mix64(self.salt ^ (j >> 1))
        slot = (j & ~1) if pair_hash % 3 == 0 else j
        received = self.start + slot * self.spacing + (pair_hash >> 8) % (self.spacing // 2000) * 1000
        lag = (pair_hash >> 40) % (self.spacing // 4000) * 2000
        return received, received + lag, received + lag // 2

    def describe(self, position: int) -> FormDesc:
        if position >= self.n_base:
            return self.tail[position - self.n_base]
        j = position
        kind = j % len(FORM_KINDS)
        family = (j // len(FORM_KINDS)) % self.families
        h = mix64(self.salt ^ (j * 0x9E3779B97F4A7C15))
        base = family * FAMILY
        patient = base + PATIENT_SLOTS[h % 3]
        visits = [base + s for s in VISIT_SLOTS[patient - base]]
        key = FORM_KINDS[kind].key
        if key == "register_household":
            members = tuple(base + s for s in PATIENT_SLOTS[: 1 + (h >> 8) % 3])
            roles, created = (("household", (base,)), ("members", members)), frozenset((base, *members))
        elif key == "update_household":
            count = 1 + (h >> 8) % 2  # one member (a repeat of one: a plain object) or two
            offset = (h >> 9) % (len(PATIENT_SLOTS) - count + 1)
            members = tuple(base + s for s in PATIENT_SLOTS[offset: offset + count])
            roles, created = (("household", (base,)), ("member_updates", members)), frozenset()
        elif key == "patient_followup":
            roles, created = (("patient", (patient,)), ("visit", (visits[0],))), frozenset((visits[0],))
        elif key == "visit_outcome":
            visit = visits[(h >> 8) % len(visits)]
            roles, created = (("visit", (visit,)), ("patient", (patient,))), frozenset()
        elif key == "register_patient":
            roles, created = (("patient", (patient,)),), frozenset((patient,))
        elif key == "record_visit":
            visit = visits[(h >> 8) % len(visits)]
            roles, created = (("visit", (visit,)),), frozenset((visit,))
        else:  # referral
            roles = (("patient", (patient,)), ("visit", (visits[-1],)), ("household", (base,)))
            created = frozenset((visits[-1],))
        received, indexed, server = self._times(j)
        user = self.cases.owner_index(base)
        return FormDesc(j, kind, roles, created, received, indexed, server, j % ARCHIVE_EVERY == ARCHIVE_EVERY - 1, user)

    # --- later forms ----------------------------------------------------------------------

    def add(self, primary: int, created: frozenset[int], time: int) -> FormDesc:
        """A new form about case ``primary`` (created by it when in ``created``), submitted at ``time``."""
        exists = self.cases.n_total
        case_type = SLOT_TYPES[primary % FAMILY]
        base = primary - primary % FAMILY
        if case_type == "household":
            patients = tuple(base + s for s in PATIENT_SLOTS if base + s < exists)
            if primary in created:
                kind, roles = "register_household", (("household", (primary,)), ("members", tuple(p for p in patients if p in created)))
            else:
                kind, roles = "update_household", (("household", (primary,)), ("member_updates", patients[:2]))
        elif case_type == "patient" and primary in created:
            kind, roles = "register_patient", (("patient", (primary,)),)
        elif case_type == "patient":
            visit = base + VISIT_SLOTS[primary - base][0]
            kind, roles = "patient_followup", (("patient", (primary,)), ("visit", (visit,) if visit < exists else ()))
        elif primary in created:
            kind, roles = "record_visit", (("visit", (primary,)),)
        else:
            kind, roles = "visit_outcome", (("visit", (primary,)), ("patient", (base + HOST_SLOT[primary - base],)))
        desc = FormDesc(self.positions, KIND_INDEX[kind], roles, created, time, time + 2000, time + 1000, False,
                        self.cases.owner_index(base))
        self.tail.append(desc)
        return desc

    # --- order ----------------------------------------------------------------------------

    def time(self, position: int, field: int) -> int:
        """received_on (0), indexed_on (1) or server_modified_on (2) of the form at ``position``."""
        if position < self.n_base:
            return self._times(position)[field]
        d = self.tail[position - self.n_base]
        return (d.received, d.indexed, d.server)[field]

    def first_at_or_after(self, field: int, moment: int) -> int:
        return bisect.bisect_left(_Times(self, field), moment)

    def first_after(self, field: int, moment: int) -> int:
        return bisect.bisect_right(_Times(self, field), moment)

    @staticmethod
    def archived_before(position: int) -> int:
        return position // ARCHIVE_EVERY

    def unarchived(self, start: int, stop: int) -> "_Unarchived":
        """Positions in [start, stop) of forms that are not archived, as a sequence."""
        return _Unarchived(self, start, stop)

    # --- rendering ------------------------------------------------------------------------

    def app_of(self, d: FormDesc) -> int:
        """The index of the app a form was submitted from: every other form of the copied app's kinds
        comes from the copy, when there is one."""
        app = APP_OF_KIND[FORM_KINDS[d.kind].key]
        return COPY if self.copied_app and app == COPIED and d.number % 2 else app

    def render(self, d: FormDesc, base_url: str) -> str:
        kind = FORM_KINDS[d.kind]
        form_id = record_id(self.tag, d.number)
        h = mix64(self.salt ^ (d.number * 0x9E3779B97F4A7C15))
        user_id, username = self.users[d.user]
        app = self.app_of(d)
        received = fmt_ts(d.received)
        start = d.received - (5 + h % 25) * 60 * US
        end = d.received - ((h >> 5) % 300) * US
        device = f"sim-device-{d.user:04d}"
        app_version = f"CommCare Android, version 2.53.1, build {self.app_versions[app]}"
        meta = (
            f'"appVersion": "{app_version}", "deviceID": "{device}", "instanceID": "{form_id}", '
            f'"timeEnd": "{fmt_ts(end)}", "timeStart": "{fmt_ts(start)}", "userID": "{user_id}", "username": "{username}"'
        )
        ctx = _Context(self, d, user_id, fmt_naive(end), self.casexml_v1 and kind.key in V1_KINDS)
        members = _nodes(kind.tree, ctx, h, {})
        tree = (
            f'{{"#type": "data", "@name": "{kind.name}", "@uiVersion": "1", "@version": "{self.app_versions[app]}", '
            f'"@xmlns": "{kind.xmlns}", {", ".join(members)}, "meta": {{"@xmlns": "{META_XMLNS}", {meta}}}}}'
        )
        return (
            f'{{"app_id": "{self.app_ids[app]}", "archived": {"true" if d.archived else "false"}, '
            f'"attachments": {{"form.xml": {{"content_type": "text/xml", "length": {len(tree) + 300}, '
            f'"url": "{base_url}/a/{self.domain}/api/form/attachment/{form_id}/form.xml"}}}}, '
            f'"build_id": "{self.build_ids[app]}", "domain": "{self.domain}", "edited_by_user_id": null, '
            f'"edited_on": null, "form": {tree}, "id": "{form_id}", "indexed_on": "{fmt_ts(d.indexed)}", '
            f'"initial_processing_complete": true, "is_phone_submission": true, '
            f'"metadata": {{{meta}, "location": null}}, "problem": null, "received_on": "{received}", '
            f'"resource_uri": "/a/{self.domain}/api/v0.5/form/{form_id}/", '
            f'"server_modified_on": "{fmt_ts(d.server)}", "type": "data", "uiversion": "1", '
            f'"version": "{self.app_versions[app]}"}}'
        )


class _Context:
    __slots__ = ("space", "desc", "roles", "user_id", "modified", "v1")

    def __init__(self, space: FormSpace, desc: FormDesc, user_id: str, modified: str, v1: bool):
        self.space, self.desc, self.roles = space, desc, dict(desc.roles)
        self.user_id, self.modified, self.v1 = user_id, modified, v1


def _nodes(nodes: tuple, ctx: _Context, h: int, bound: dict[str, int]) -> list[str]:
    """JSON members for a list of form nodes; ``bound`` maps repeat roles to the current entry's case."""
    slot = next((n for n in nodes if isinstance(n, CaseSlot)), None)
    slot_case = _slot_case(slot, ctx, bound) if slot else None
    override: dict[str, Value] = {}  # a created case's name question holds the case's name
    if slot_case is not None and slot.name_from and slot_case in ctx.desc.created:
        override[slot.name_from] = _case_values(ctx, slot_case).name
    values: dict[str, Value] = {}
    out = []
    for node in nodes:
        if isinstance(node, Question):
            v = node.calculate if node.calculate is not None else override.get(node.name) or value(node.name, _sub(h, _salt(node.name)))
            values[node.name] = v
            out.append(f'"{node.name}": "{esc(v, UTF8)}"')
        elif isinstance(node, Group) and node.repeat:
            entries = ctx.roles.get(node.name, ())
            rendered = [
                "{" + ", ".join(_nodes(node.children, ctx, _sub(h, i), {**bound, node.name: i})) + "}" for i in entries
            ]
            if len(rendered) == 1:
                out.append(f'"{node.name}": {rendered[0]}')  # a repeat with one entry is a plain object
            elif rendered:
                out.append(f'"{node.name}": [{", ".join(rendered)}]')
        elif isinstance(node, Group):
            out.append(f'"{node.name}": {{{", ".join(_nodes(node.children, ctx, _sub(h, _salt(node.name)), bound))}}}')
        elif slot_case is not None:
            out.append(f'"case": {_block(node, slot_case, ctx, values, h)}')
    return out


def _slot_case(slot: CaseSlot, ctx: _Context, bound: dict[str, int]) -> int | None:
    if slot.role in bound:
        return bound[slot.role]
    indices = ctx.roles.get(slot.role, ())
    return indices[0] if indices else None


def _case_values(ctx: _Context, index: int):
    cases = ctx.space.cases
    return cases.values(index, cases.states.get(index))


def _block(slot: CaseSlot, index: int, ctx: _Context, values: dict[str, Value], h: int) -> str:
    """A case block: CaseXML 2.0 (the id and stamps as attributes), or 1.0 (as elements, the case type in
    ``case_type_id``, no index: ``casexml/apps/case/xml/parser.py``)."""
    cases = ctx.space.cases
    if ctx.v1:
        parts = [f'"case_id": "{cases.case_id(index)}", "date_modified": "{ctx.modified}"']
    else:
        parts = [
            f'"@case_id": "{cases.case_id(index)}", "@date_modified": "{ctx.modified}", '
            f'"@user_id": "{ctx.user_id}", "@xmlns": "{CASE_XMLNS}"'
        ]
    created = index in ctx.desc.created
    if created:
        v = _case_values(ctx, index)
        type_key, owner = ("case_type_id", f'"user_id": "{ctx.user_id}"') if ctx.v1 else ("case_type", f'"owner_id": "{v.owner_id}"')
        parts.append(f'"create": {{"case_name": "{esc(v.name, UTF8)}", "{type_key}": "{slot.case_type}", {owner}}}')
    update = ", ".join(f'"{name}": "{esc(values[name], UTF8)}"' for name in slot.update)
    parts.append(f'"update": {{{update}}}' if update else '"update": ""')
    target = parent_index(index)
    if ctx.v1:
        pass  # CaseXML 1.0 has no index
    elif created and slot.index and target is not None:
        relationship = ', "@relationship": "extension"' if slot.index.relationship == "extension" else ""
        parts.append(
            f'"index": {{"{slot.index.name}": {{"#text": "{cases.case_id(target)}", '
            f'"@case_type": "{slot.index.case_type}"{relationship}}}}}'
        )
    elif slot.empty_index:
        parts.append('"index": ""')
    if slot.close_one_in and not created and (h >> 20) % slot.close_one_in == 0:
        parts.append('"close": ""')
    return "{" + ", ".join(parts) + "}"


class _Times:
    def __init__(self, space: FormSpace, field: int):
        self.space, self.field = space, field

    def __len__(self) -> int:
        return self.space.positions

    def __getitem__(self, position: int) -> int:
        return self.space.time(position, self.field)


class _Unarchived:
    """The unarchived positions of [start, stop), computed, not listed: base form j is archived iff j % 53 == 52."""

    def __init__(self, space: FormSpace, start: int, stop: int):
        self.start, self.stop, self.n_base = start, min(stop, space.positions), space.n_base
        base_stop = min(self.stop, self.n_base)
        self._base_live = max(0, self._live_before(base_stop) - self._live_before(min(start, base_stop)))
        self._tail_start = max(start, self.n_base)

    @staticmethod
    def _live_before(x: int) -> int:
        return x - x // ARCHIVE_EVERY

    def __len__(self) -> int:
        return self._base_live + max(0, self.stop - self._tail_start)

    def __getitem__(self, k: int) -> int:
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        if k < self._base_live:
            live = self._live_before(min(self.start, self.n_base)) + k
            return live + live // (ARCHIVE_EVERY - 1)
        return self._tail_start + (k - self._base_live)
