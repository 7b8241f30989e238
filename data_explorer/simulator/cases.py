"""The cases of one project space: generated from (seed, domain, index, version), ordered as CommCare orders them.

Order is ``indexed_on`` then ``case_id``. Base cases (data version 0) occupy
positions ``0 .. n_base-1`` in groups of four; about a third of the groups
share one ``indexed_on`` instant, and within such a group the order is by id.
Every change made later (an update, or a new case) goes to a *tail* kept in
the same order, usually at its end, so updated cases move to the end as in
CommCare; a change indexed late goes to its place within the tail. The record
a change supersedes stays in place but is no longer live; a deleted case
leaves no live record. Only touched cases take memory.

A quarter of the groups are *legacy* records, stored at whole seconds (all
their timestamps), as CommCare's older records were; they need a spacing of
two seconds or more between positions, so that flooring keeps the order.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterator

from data_explorer.simulator.pools import ASCII, FIRST_NAMES, RAW, SURNAMES, UTF8, Value, concat, esc, raw
from data_explorer.simulator.schema import CASE_PROPERTIES, SLOT_TYPES, VALUE_FUNCTIONS, VALUE_TABLES, parent_index
from data_explorer.simulator.stamps import PLAIN, Printer
from data_explorer.simulator.synth import (
    DAY_US, MASK64, US, floor_second, fmt_date, fmt_ts, make_tag, mix64, record_id, stable_hash,
)

_GOLD, _SILVER = 0x9E3779B97F4A7C15, 0xD1B54A32D192ED03
_MEMO = 16_384  # entries kept by each small cache of recent values
HOUSEHOLD_NAMES = tuple(concat(last, " household") for last in SURNAMES)
PERSON_NAMES = tuple(concat(first, " ", last) for last in SURNAMES for first in FIRST_NAMES)
_PROP_SALTS = {name: stable_hash("prop", name) for props in CASE_PROPERTIES.values() for name in props}
_CLOSE_ONE_IN = {"household": 50, "patient": 12, "visit": 3}
_INDEX_OF_TYPE = {"patient": ("parent", "household", "child"), "visit": ("host", "patient", "extension")}


@dataclass(frozen=True)
class CaseState:
    """A touched case: its current version and times. Base cases that were never touched have none."""

    version: int
    time: int  # indexed_on of this version, microseconds
    opened: int  # date_opened, microseconds
    new: bool  # created after data version 0
    offset: int  # where this version sits in the tail; -1 for a deleted case
    deleted: bool = False


class CaseSpace:
    def __init__(self, seed: int, domain: str, n_base: int, owner_ids: list[str], start: int, span: int):
        self.domain = domain
        self.tag = make_tag(seed, domain, "case")
        self.salt = stable_hash(seed, domain, "case")
        self.family_salt = stable_hash(seed, domain, "family")
        self.n_base = n_base
        self.n_total = n_base
        self.owner_ids = owner_ids
        self.start = start
        self.spacing = max(1000, span // max(n_base, 1) // 1000 * 1000)  # whole milliseconds
        self._jitter = max(1, self.spacing // 2000)  # a group's offset: less than half a spacing, in ms
        self.legacy_ok = self.spacing >= 2 * US  # flooring a group to its second keeps it after the one before
        self.states: dict[int, CaseState] = {}
        self.tail: list[tuple[int, str, int, int]] = []  # (time, case_id, index, version), sorted
        self.moved: list[int] = []  # base positions whose case has a newer version in the tail, sorted
        self.stale: list[int] = []  # tail offsets superseded by a later tail entry, sorted
        self._group_cache: tuple[int, list[tuple[int, str]]] = (-1, [])
        self._ids: dict[int, str] = {}  # recent ids: a page's, and their parents'
        self._families: dict[int, tuple[int, Value, str]] = {}  # recent families: (surname, household name, owner)
        self._group_hashes: dict[int, int] = {}

    # --- identity and order ---------------------------------------------------------------

    def case_id(self, index: int) -> str:
        """The id of case ``index``; recent ones are remembered (families are read together)."""
        ids = self._ids
        case_id = ids.get(index)
        if case_id is None:
            if len(ids) > _MEMO:
                ids.clear()
            case_id = ids[index] = record_id(self.tag, index)
        return case_id

    def owner_index(self, index: int) -> int:
        """Which owner a case has: one per family."""
        return mix64(self.family_salt ^ (index >> 3)) % len(self.owner_ids)

    def _family(self, family: int) -> tuple[int, Value, str]:
        """(surname number, household name, owner id) shared by a family's cases."""
        found = self._families.get(family)
        if found is None:
            if len(self._families) > _MEMO:
                self._families.clear()
            h = mix64(self.family_salt ^ family)
            surname = h % len(SURNAMES)
            found = self._families[family] = (surname, HOUSEHOLD_NAMES[surname], self.owner_ids[h % len(self.owner_ids)])
        return found

    def _group_hash(self, group: int) -> int:
        found = self._group_hashes.get(group)
        if found is None:
            if len(self._group_hashes) > _MEMO:
                self._group_hashes.clear()
            found = self._group_hashes[group] = mix64(self.salt ^ group)
        return found

    def base_time(self, index: int) -> int:
        group = index >> 2
        g_hash = self._group_hashes.get(group) or self._group_hash(group)
        slot = (index & ~3) if g_hash % 3 == 0 else index  # a third of the groups share one instant
        time = self.start + slot * self.spacing + (g_hash >> 8) % self._jitter * 1000
        return floor_second(time) if (g_hash >> 4) & 3 == 3 and self.legacy_ok else time

    def legacy(self, index: int) -> bool:
        """Whether base case ``index`` is an old record, stored at whole seconds."""
        return self.legacy_ok and (self._group_hash(index >> 2) >> 4) & 3 == 3

    def group(self, group: int) -> list[tuple[int, str]]:
        """(index, case_id) of one group of four base positions, in order."""
        cached = self._group_cache  # read once: the prefetch thread replaces it too
        if cached[0] == group:
            return cached[1]
        first = group * 4
        members = [(i, self.case_id(i)) for i in range(first, min(first + 4, self.n_base))]
        if self._group_hash(group) % 3 == 0:
            members.sort(key=lambda m: m[1])
        self._group_cache = (group, members)
        return members

    def base_position(self, index: int) -> int:
        members = self.group(index >> 2)
        return (index & ~3) + next(k for k, (i, _) in enumerate(members) if i == index)

    @property
    def positions(self) -> int:
        return self.n_base + len(self.tail)

    def key(self, position: int) -> tuple[int, str]:
        if position < self.n_base:
            index, case_id = self.group(position >> 2)[position & 3]
            return self.base_time(index), case_id
        entry = self.tail[position - self.n_base]
        return entry[0], entry[1]

    def position_after(self, time: int, case_id: str) -> int:
        """The first position whose (indexed_on, case_id) is greater than the given one."""
        return bisect.bisect_right(_Keys(self), (time, case_id))

    def position_from(self, time: int) -> int:
        """The first position whose indexed_on is at or after ``time``."""
        return bisect.bisect_left(_Keys(self), (time, ""))

    def live_count(self, start: int, stop: int) -> int:
        stop = min(stop, self.positions)
        if start >= stop:
            return 0
        moved = bisect.bisect_left(self.moved, stop) - bisect.bisect_left(self.moved, start)
        lo, hi = max(start - self.n_base, 0), max(stop - self.n_base, 0)
        stale = bisect.bisect_left(self.stale, hi) - bisect.bisect_left(self.stale, lo)
        return stop - start - moved - stale

    def iter_live(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, int, CaseState | None]]:
        """(position, index, state) of the live records in [start, stop), in order."""
        stop = self.positions if stop is None else min(stop, self.positions)
        states = self.states
        position, base_stop = start, min(stop, self.n_base)
        while position < base_stop:
            group = position >> 2
            end = min((group + 1) * 4, base_stop)
            if self._group_hash(group) % 3:  # a group in index order: position == index
                for index in range(position, end):
                    if index not in states:
                        yield index, index, None
            else:  # a group at one instant, in id order
                members = self.group(group)
                for p in range(position, end):
                    index = members[p & 3][0]
                    if index not in states:
                        yield p, index, None
            position = end
        tail, n_base = self.tail, self.n_base
        for position in range(max(position, n_base), stop):
            _, _, index, version = tail[position - n_base]
            state = states[index]
            if state.version == version and not state.deleted:
                yield position, index, state

    def lookup(self, index: int) -> tuple[bool, CaseState | None]:
        """Whether case ``index`` exists (was created and not deleted), and its state if it was touched."""
        state = self.states.get(index)
        return index < self.n_total and not (state is not None and state.deleted), state

    def is_live(self, index: int) -> bool:
        return self.lookup(index)[0]

    # --- change ---------------------------------------------------------------------------

    def touch(self, index: int, time: int) -> None:
        """A new version of an existing case (an update), or version 0 of a new one, indexed at ``time``.

        ``time`` is usually later than every change before it; one indexed late takes its place in the order.
        """
        case_id = record_id(self.tag, index)
        offset = self._tail_slot(time, case_id)  # before reading the state: it may move the state's offset
        state = self.states.get(index)
        assert state is None or not state.deleted, "a deleted case is not changed"
        if index >= self.n_total:
            assert index == self.n_total, "new cases are created in index order"
            self.n_total += 1
            opened = self._times(time, self._hash(index, 0), None)[2]  # created when last modified
            new_state = CaseState(0, time, opened, True, offset)
        elif state is None:
            bisect.insort(self.moved, self.base_position(index))
            new_state = CaseState(1, time, self._base_times(index)[3], False, offset)
        else:
            bisect.insort(self.stale, state.offset)
            new_state = CaseState(state.version + 1, time, state.opened, state.new, offset)
        self.states[index] = new_state
        self.tail.insert(offset, (time, case_id, index, new_state.version))

    def _tail_slot(self, time: int, case_id: str) -> int:
        """Where a tail entry at (time, case_id) goes; the offsets after it move one place on."""
        tail = self.tail
        if not tail or (time, case_id) > tail[-1][:2]:
            return len(tail)
        assert time > self.start + self.n_base * self.spacing, "changes come after the base data"
        at = bisect.bisect_left(tail, (time, case_id))
        self.stale = [o + (o >= at) for o in self.stale]
        for index, state in self.states.items():
            if state.offset >= at:
                self.states[index] = CaseState(state.version, state.time, state.opened, state.new, state.offset + 1,
                                               state.deleted)
        return at

    def delete(self, index: int) -> None:
        """Case ``index`` is deleted: it leaves every list and lookup (CommCare removes it from the index)."""
        state = self.states.get(index)
        assert index < self.n_total and not (state is not None and state.deleted), "only a live case is deleted"
        if state is None:
            bisect.insort(self.moved, self.base_position(index))
            self.states[index] = CaseState(0, self.base_time(index), self._base_times(index)[3], False, -1, True)
        else:
            bisect.insort(self.stale, state.offset)
            self.states[index] = CaseState(state.version, state.time, state.opened, state.new, -1, True)

    # --- values ---------------------------------------------------------------------------

    def _hash(self, index: int, version: int) -> int:
        return mix64(self.salt + index * _GOLD + version * _SILVER)

    def _base_times(self, index: int) -> tuple[int, int, int, int]:
        """(indexed_on, server_last_modified, last_modified, date_opened) of version 0."""
        times = self._times(self.base_time(index), self._hash(index, 0), None)
        return tuple(map(floor_second, times)) if self.legacy(index) else times  # type: ignore[return-value]

    @staticmethod
    def _times(time: int, h: int, opened: int | None) -> tuple[int, int, int, int]:
        """(indexed_on, server_last_modified, last_modified, date_opened): the phone's clock runs behind."""
        server = time - (h & 0x3F) * 1000
        phone = server - ((h >> 16) % 3600) * US
        if opened is None:
            return time, server, phone, phone - ((h >> 28) % 20) * DAY_US
        return time, server, max(phone, opened), opened

    def values(self, index: int, state: CaseState | None) -> "CaseValues":
        version = state.version if state else 0
        h = mix64(self.salt + index * _GOLD + version * _SILVER)
        legacy = False
        if state is None:
            time = self.base_time(index)
            server = time - (h & 0x3F) * 1000
            phone = server - ((h >> 16) % 3600) * US
            times = (time, server, phone, phone - ((h >> 28) % 20) * DAY_US)
            if self.legacy_ok and self.legacy(index):
                legacy, times = True, tuple(map(floor_second, times))
        else:
            times = self._times(state.time, h, state.opened)
        case_type = SLOT_TYPES[index & 7]
        h0 = h if version == 0 else self._hash(index, 0)
        closed = (state is None or not state.new) and h0 % _CLOSE_ONE_IN[case_type] == 0
        for v in range(1, version + 1):
            closed = closed or (self._hash(index, v) >> 40) & 7 == 0
        surname, household, owner = self._families.get(index >> 3) or self._family(index >> 3)
        if case_type == "patient":
            name: Value = PERSON_NAMES[surname * len(FIRST_NAMES) + h0 % len(FIRST_NAMES)]
            external = f"P-{index + 1:06d}"
        elif case_type == "household":
            name, external = household, f"HH-{index + 1:06d}"
        else:
            name, external = "Visit " + fmt_date(times[3]), None
        case_id = self._ids.get(index) or self.case_id(index)
        return CaseValues(index, case_id, case_type, name, external, owner, times, closed, h, legacy)


class CaseValues:
    """Every field of one case version, values as ``pools`` values (raw and escaped).

    ``times`` are the values the order and the filters use (``indexed_on`` at the index's precision)."""

    __slots__ = ("index", "case_id", "case_type", "name", "external_id", "owner_id", "times", "closed", "h", "legacy",
                 "_props")

    def __init__(self, index, case_id, case_type, name, external_id, owner_id, times, closed, h, legacy=False):
        self.index, self.case_id, self.case_type, self.name = index, case_id, case_type, name
        self.external_id, self.owner_id, self.times, self.closed, self.h = external_id, owner_id, times, closed, h
        self.legacy = legacy
        self._props: dict[str, str] | None = None

    def indexed_on_text(self, printer: Printer = PLAIN) -> str:
        """``indexed_on`` as printed: the stored value, which the next page's cursor carries too."""
        if printer.plain:
            return fmt_ts(self.times[0])
        return printer.text(printer.stored_indexed_on(self.times[0], self.h, self.legacy), self.h)

    @property
    def date_closed(self) -> int | None:
        return self.times[2] if self.closed else None

    @property
    def properties(self) -> dict[str, str]:
        if self._props is None:
            self._props = dict(properties(self.case_type, self.h, RAW))
        return self._props


def _fragment_tables() -> dict[int, dict[str, tuple]]:
    """Per mode and property: RAW → (name, value) pairs; ASCII/UTF8 → ready ``"name": "value"`` JSON text."""
    tables: dict[int, dict[str, tuple]] = {RAW: {}, ASCII: {}, UTF8: {}}
    for props in CASE_PROPERTIES.values():
        for name in props:
            values = VALUE_TABLES.get(name)
            if values is None:
                continue
            tables[RAW][name] = tuple((name, raw(v)) for v in values)
            for mode in (ASCII, UTF8):
                tables[mode][name] = tuple(f'"{name}": "{esc(v, mode)}"' for v in values)
    return tables


_FRAGMENTS = _fragment_tables()
_PLAIN, _PHONE, _VISIT_TYPE, _COMMENT, _REASON = range(5)
_SPECIAL = {"phone_number": _PHONE, "visit_type": _VISIT_TYPE, "comment": _COMMENT, "referral_reason": _REASON}
_SPECS = {  # per mode and case type: (name, salt, table size, special handling, fragments) per property
    mode: {
        case_type: tuple(
            (name, _PROP_SALTS[name], len(VALUE_TABLES.get(name, ())), _SPECIAL.get(name, _PLAIN),
             _FRAGMENTS[mode].get(name, ()))
            for name in props
        )
        for case_type, props in CASE_PROPERTIES.items()
    }
    for mode in (RAW, ASCII, UTF8)
}
_REFERRAL = VALUE_TABLES["visit_type"].index("referral")
_phone = VALUE_FUNCTIONS["phone_number"]


def properties(case_type: str, h: int, mode: int) -> list:
    """The properties of a case version with hash ``h``: (name, raw) pairs in RAW mode, JSON members otherwise.

    Some are absent on purpose: a fifth of the patients have no phone number,
    three visits in ten no comment, and only referral visits a referral reason.
    """
    out = []
    referral = False
    for name, salt, size, special, fragments in _SPECS[mode][case_type]:
        ph = (((h ^ salt) * _GOLD) & MASK64) >> 7
        if special:
            if special == _PHONE:
                if ph % 5:
                    value = _phone(ph)
                    out.append((name, value) if mode == RAW else f'"{name}": "{value}"')
                continue
            if special == _VISIT_TYPE:
                referral = ph % size == _REFERRAL
            elif (special == _COMMENT and ph % 10 >= 7) or (special == _REASON and not referral):
                continue
        out.append(fragments[ph % size])
    return out


def index_of(case_type: str) -> tuple[str, str, str] | None:
    """(index name, referenced case type, relationship) of a case type's one index."""
    return _INDEX_OF_TYPE.get(case_type)


_PARENT_DELTA = {slot: slot - parent_index(slot) for slot in range(1, 8)}
_INDEX_JSON = {
    case_type: (f'"{name}": {{"case_id": "', f'", "case_type": "{target}", "relationship": "{relationship}"}}')
    for case_type, (name, target, relationship) in _INDEX_OF_TYPE.items()
}


def render(space: CaseSpace, v: CaseValues, mode: int = ASCII, printer: Printer = PLAIN) -> str:
    """One case as Case API v2 JSON text (separators as Django's: ", " and ": ")."""
    indexed, server, phone, opened = v.times
    link = _INDEX_JSON.get(v.case_type)
    if link:
        parent = v.index - _PARENT_DELTA[v.index & 7]
        indices = f"{link[0]}{space._ids.get(parent) or space.case_id(parent)}{link[1]}"
    else:
        indices = ""
    name = v.name if type(v.name) is str else v.name[mode]
    external = "null" if v.external_id is None else f'"{v.external_id}"'
    if printer.plain:
        opened_text, last_modified, server_text, indexed_text = fmt_ts(opened), fmt_ts(phone), fmt_ts(server), fmt_ts(indexed)
    else:
        text, h = printer.text, v.h
        opened_text, last_modified, server_text = text(opened, h), text(phone, h), text(server, h)
        indexed_text = v.indexed_on_text(printer)
    closed = f'true, "date_closed": "{last_modified}"' if v.closed else 'false, "date_closed": null'
    return (
        f'{{"domain": "{space.domain}", "case_id": "{v.case_id}", "case_type": "{v.case_type}", '
        f'"case_name": "{name}", "external_id": {external}, "owner_id": "{v.owner_id}", '
        f'"date_opened": "{opened_text}", "last_modified": "{last_modified}", '
        f'"server_last_modified": "{server_text}", "indexed_on": "{indexed_text}", "closed": {closed}, '
        f'"properties": {{{", ".join(properties(v.case_type, v.h, mode))}}}, "indices": {{{indices}}}}}'
    )


class _Keys:
    """The (indexed_on, case_id) of every position, as a sequence for ``bisect``."""

    def __init__(self, space: CaseSpace):
        self.space = space

    def __len__(self) -> int:
        return self.space.positions

    def __getitem__(self, position: int) -> tuple[int, str]:
        return self.space.key(position)

