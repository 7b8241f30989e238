"""The forms of one project space: generated from (seed, domain, number), in submission order.

Base form ``j`` is of kind ``FORM_KINDS[j % 7]`` and concerns family
``(j // 7) % families`` of the base cases: its case blocks name real cases of
that family (the household, one to three patients, their visits). Forms added
later (``FormSpace.add``) are kept as small descriptors in a tail. Every third
pair of forms shares one timestamp; ``received_on``, ``indexed_on`` and
``server_modified_on`` all grow with the position, so date filters become
position ranges. Base form ``j`` is archived when ``j % 53 == 52``. A quarter
of the pairs are *legacy* records stored at whole seconds, where flooring
keeps them after the pair before. Forms are submitted by the case owners
(``users``): mobile workers, deactivated ones among them, and web users. With
the space's ``copied_app`` every odd-numbered form of the first app's kinds
comes from its copy; with ``casexml_v1`` the Update Household forms write
CaseXML 1.0 blocks.

A form's *number* names it (its id); base form ``j`` is number ``j``. Forms
archived, unarchived or deleted later, or indexed late, make the space
*irregular*: an archived or unarchived form is indexed again (a new entry in
the tail, with later ``indexed_on`` and ``server_modified_on``), a deleted one
leaves, and the tail is no longer in the order of every time field. The
selection then sorts what it serves instead of computing positions.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

from data_explorer.simulator.apps import COPIED, COPY
from data_explorer.simulator.cases import CaseSpace
from data_explorer.simulator.config import DomainConfig
from data_explorer.simulator.pools import UTF8, Value, esc
from data_explorer.simulator.schema import (
    APP_OF_KIND, CASE_XMLNS, FAMILY, FORM_KINDS, HOST_SLOT, META_XMLNS, PATIENT_SLOTS, SLOT_TYPES, VISIT_SLOTS, CaseSlot,
    Group, Question, parent_index, question_id, value,
)
from data_explorer.simulator.stamps import PLAIN, Printer
from data_explorer.simulator.synth import (
    MASK64, US, floor_second, fmt_naive, fmt_ts, make_tag, mix64, record_id, stable_hash,
)

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
    legacy: bool = False  # an old record: stored at whole seconds

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
        self.renamed = config.renamed_questions
        self.casexml_v1 = config.casexml_v1
        self.cases = cases
        self.families = max(cases.n_base // FAMILY, 1)
        self.app_ids, self.build_ids, self.app_versions = app_ids, build_ids, app_versions
        self.users = users  # (user id, username) of who submits: the case owners
        self.start = start
        self.spacing = max(4000, span // max(n_base, 1) // 1000 * 1000)  # whole milliseconds
        self.tail: list[FormDesc] = []
        self.next_number = n_base
        self.entry: dict[int, int] = {}  # number -> tail offset of the form's current entry
        self.moved: set[int] = set()  # base numbers whose record is superseded or deleted
        self.stale: set[int] = set()  # tail offsets superseded or deleted
        self.deleted: set[int] = set()
        self.irregular = False

    @property
    def positions(self) -> int:
        return self.n_base + len(self.tail)

    def form_id(self, number: int) -> str:
        return record_id(self.tag, number)

    # --- base forms -----------------------------------------------------------------------

    def _raw_times(self, j: int, pair_hash: int) -> tuple[int, int, int]:
        slot = (j & ~1) if pair_hash % 3 == 0 else j
        received = self.start + slot * self.spacing + (pair_hash >> 8) % (self.spacing // 2000) * 1000
        lag = (pair_hash >> 40) % (self.spacing // 4000) * 2000
        return received, received + lag, received + lag // 2

    def _legacy_pair(self, pair: int, pair_hash: int) -> bool:
        """A quarter of the pairs, where flooring the first one's times to whole seconds keeps every field
        at or after the pair before (the second is at or after the first, floored or not)."""
        if (pair_hash >> 4) & 3 != 3:
            return False
        if pair == 0:
            return True
        first = self._raw_times(2 * pair, pair_hash)
        before = self._raw_times(2 * pair - 1, mix64(self.salt ^ (pair - 1)))
        return all(floor_second(a) >= b for a, b in zip(first, before))

    def _times(self, j: int) -> tuple[int, int, int]:
        pair_hash = mix64(self.salt ^ (j >> 1))
        times = self._raw_times(j, pair_hash)
        if (pair_hash >> 4) & 3 == 3 and self._legacy_pair(j >> 1, pair_hash):
            return floor_second(times[0]), floor_second(times[1]), floor_second(times[2])
        return times

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
        legacy = self._legacy_pair(j >> 1, mix64(self.salt ^ (j >> 1)))
        return FormDesc(j, kind, roles, created, received, indexed, server, j % ARCHIVE_EVERY == ARCHIVE_EVERY - 1, user,
                        legacy)

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
        desc = FormDesc(self.next_number, KIND_INDEX[kind], roles, created, time, time + 2000, time + 1000, False,
                        self.cases.owner_index(base))
        self.next_number += 1
        self._append(desc)
        return desc

    def _append(self, desc: FormDesc) -> None:
        if self.tail and desc.indexed <= self.tail[-1].indexed:
            self.irregular = True  # indexed late: the tail leaves the order of its positions
        self.entry[desc.number] = len(self.tail)
        self.tail.append(desc)

    def _supersede(self, number: int) -> None:
        offset = self.entry.pop(number, None)
        if offset is None:
            self.moved.add(number)
        else:
            self.stale.add(offset)
        self.irregular = True

    def current(self, number: int) -> FormDesc | None:
        """The form of this number as it is now; None when deleted or never submitted."""
        if number in self.deleted:
            return None
        offset = self.entry.get(number)
        if offset is not None:
            return self.tail[offset]
        return self.describe(number) if number < self.n_base else None

    def archived_state(self, number: int) -> bool | None:
        """Whether the form of this number is archived now; None when deleted or never submitted."""
        if number in self.deleted:
            return None
        offset = self.entry.get(number)
        if offset is not None:
            return self.tail[offset].archived
        return number % ARCHIVE_EVERY == ARCHIVE_EVERY - 1 if number < self.n_base else None

    def set_archived(self, number: int, archived: bool, time: int) -> FormDesc:
        """Archive or unarchive a live form at ``time``: it is indexed again (later ``indexed_on``)."""
        desc = self.current(number)
        assert desc is not None and desc.archived != archived, "only a live form changes its archived state"
        self._supersede(number)
        changed = replace(desc, archived=archived, indexed=time + 2000, server=time + 1000, legacy=False)
        self._append(changed)
        return changed

    def delete(self, number: int) -> None:
        """A live form is deleted: it leaves every list and lookup."""
        assert self.current(number) is not None, "only a live form is deleted"
        self._supersede(number)
        self.deleted.add(number)

    def live_positions(self) -> list[int]:
        """The positions of the forms as they are now (one each; deleted ones left out)."""
        n_base, moved, stale = self.n_base, self.moved, self.stale
        live = [p for p in range(n_base) if p not in moved] if moved else list(range(n_base))
        live += [n_base + o for o in range(len(self.tail)) if o not in stale]
        return live

    def counts(self) -> tuple[int, int]:
        """(live forms, archived ones among them)."""
        if not self.irregular:
            return self.positions, self.archived_before(self.n_base)
        live = [self.describe(p) for p in self.live_positions()]
        return len(live), sum(d.archived for d in live)

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

    def render(self, d: FormDesc, base_url: str, printer: Printer = PLAIN) -> str:
        kind = FORM_KINDS[d.kind]
        form_id = record_id(self.tag, d.number)
        h = mix64(self.salt ^ (d.number * 0x9E3779B97F4A7C15))
        user_id, username = self.users[d.user]
        app = self.app_of(d)
        if printer.plain:
            received, server, indexed = fmt_ts(d.received), fmt_ts(d.server), fmt_ts(d.indexed)
        else:
            received, server = printer.text(d.received, h), printer.text(d.server, h)
            indexed = printer.text(printer.stored_indexed_on(d.indexed, h, d.legacy), h)
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
            f'"edited_on": null, "form": {tree}, "id": "{form_id}", "indexed_on": "{indexed}", '
            f'"initial_processing_complete": true, "is_phone_submission": true, '
            f'"metadata": {{{meta}, "location": null}}, "problem": null, "received_on": "{received}", '
            f'"resource_uri": "/a/{self.domain}/api/v0.5/form/{form_id}/", '
            f'"server_modified_on": "{server}", "type": "data", "uiversion": "1", '
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
            out.append(f'"{question_id(node.name, ctx.space.renamed)}": "{esc(v, UTF8)}"')
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
