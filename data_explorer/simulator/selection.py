"""Which records a query selects, in order: index arithmetic and bisection where possible, scans where not.

Single-valued ``indexed_on`` ranges (cases) and date ranges (forms) become
position bounds, and cursors and offsets index into them, so paging a large
space costs the page and not the space. Other filters are evaluated by a scan
whose result (the matching positions) is kept in a small cache per data
version, so the pages after the first are cheap too.
"""

from __future__ import annotations

import bisect
from array import array
from collections import OrderedDict
from typing import Callable

from data_explorer.simulator.cases import CaseSpace, CaseState, CaseValues, index_of
from data_explorer.simulator.dataset import ProjectSpace
from data_explorer.simulator.forms import FormDesc, FormSpace
from data_explorer.simulator.queries import CaseFilter, CaseQuery, FormQuery, to_boolean
from data_explorer.simulator.schema import FAMILY, FORM_KINDS, SLOT_TYPES, parent_index
from data_explorer.simulator.synth import DAY_US, parse_id

CACHE_SIZE = 16
CACHE_POSITIONS = 4_000_000
_DATE_FIELD = {"indexed_on": 0, "server_last_modified": 1, "last_modified": 2, "date_opened": 3}


class ScanCache:
    """Matching positions per (space, data version, filters); least recently used out first.

    Bounded in entries and in positions held (8 bytes each), so memory stays flat.
    """

    def __init__(self, size: int = CACHE_SIZE, positions: int = CACHE_POSITIONS):
        self.size, self.positions = size, positions
        self._entries: OrderedDict[tuple, array] = OrderedDict()

    def get(self, key: tuple, compute: Callable[[], array]) -> array:
        found = self._entries.get(key)
        if found is None:
            found = self._entries[key] = compute()
            while len(self._entries) > 1 and (
                len(self._entries) > self.size or sum(map(len, self._entries.values())) > self.positions
            ):
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return found

    def clear(self) -> None:
        self._entries.clear()


# --- cases -------------------------------------------------------------------------------------


def case_page(space: ProjectSpace, query: CaseQuery, cache: ScanCache) -> tuple[int, list[tuple[int, CaseState | None]]]:
    """(matching records, the page as (index, state) pairs) for a Case API v2 list query."""
    cases = space.cases
    start, stop = 0, cases.positions
    predicates = []
    for f in query.filters:
        if f.key.startswith("indexed_on.") and len(f.values) == 1:
            start, stop = _narrow(cases, f, start, stop)
        else:
            predicates.append((f, _case_predicate(f, space)))
    if query.after is not None:
        start = max(start, cases.position_after(*query.after))
    if not predicates:
        matching = cases.live_count(start, stop)
        page = []
        if query.limit:
            for _, index, state in cases.iter_live(start, stop):
                page.append((index, state))
                if len(page) == query.limit:
                    break
        return matching, page
    key = ("cases", space.name, space.revision, tuple((f.key, f.moments or f.values) for f, _ in predicates))
    positions = cache.get(key, lambda: _scan_cases(cases, [p for _, p in predicates]))
    lo, hi = bisect.bisect_left(positions, start), bisect.bisect_left(positions, stop)
    page = []
    for position in positions[lo: min(hi, lo + query.limit)]:
        index, state = _case_at(cases, position)
        page.append((index, state))
    return hi - lo if hi > lo else 0, page


def _narrow(cases: CaseSpace, f: CaseFilter, start: int, stop: int) -> tuple[int, int]:
    moment, date_only = f.moments[0]
    op = f.key.split(".", 1)[1]
    if op == "gte":
        start = max(start, cases.position_from(moment))
    elif op == "gt":
        start = max(start, cases.position_from(moment + 1))
    elif op == "lt":
        stop = min(stop, cases.position_from(moment))
    else:  # lte; a date alone means the whole day
        stop = min(stop, cases.position_from(moment + (DAY_US if date_only else 1)))
    return start, stop


def _case_at(cases: CaseSpace, position: int) -> tuple[int, CaseState | None]:
    if position < cases.n_base:
        index = cases.group(position >> 2)[position & 3][0]
        return index, None
    _, _, index, _ = cases.tail[position - cases.n_base]
    return index, cases.states[index]


def _scan_cases(cases: CaseSpace, predicates: list[Callable[[CaseValues], bool]]) -> array:
    found = array("q")
    for position, index, state in cases.iter_live():
        values = cases.values(index, state)
        if all(p(values) for p in predicates):
            found.append(position)
    return found


def _case_predicate(f: CaseFilter, space: ProjectSpace) -> Callable[[CaseValues], bool]:
    values = set(f.values)
    key = f.key
    if key == "case_type":
        return lambda v: v.case_type in values
    if key == "owner_id":
        return lambda v: v.owner_id in values
    if key == "case_name":
        return lambda v: (v.name if type(v.name) is str else v.name[0]) in values
    if key == "external_id":
        return lambda v: v.external_id in values
    if key == "closed":
        wanted = {to_boolean(x) for x in f.values}
        return lambda v: v.closed in wanted
    if key == "include_deprecated":
        if any(to_boolean(x) for x in f.values):
            return lambda v: True
        return lambda v: v.case_type not in space.deprecated
    prefix, _, qualifier = key.partition(".")
    if prefix == "properties":
        return lambda v: v.properties.get(qualifier) in values
    if prefix == "indices":
        cases = space.cases

        def indexed(v: CaseValues) -> bool:
            link = index_of(v.case_type)
            return link is not None and link[0] == qualifier and cases.case_id(parent_index(v.index)) in values

        return indexed
    return _date_predicate(prefix, qualifier, f.moments)


def _date_predicate(name: str, op: str, moments: tuple[tuple[int, bool], ...]) -> Callable[[CaseValues], bool]:
    checks = []
    for moment, date_only in moments:
        if op == "gt":
            checks.append(lambda t, m=moment: t > m)
        elif op == "gte":
            checks.append(lambda t, m=moment: t >= m)
        elif op == "lt":
            checks.append(lambda t, m=moment: t < m)
        else:
            end = moment + DAY_US - 1 if date_only else moment
            checks.append(lambda t, m=end: t <= m)
    if name == "date_closed":
        return lambda v: v.date_closed is not None and any(c(v.date_closed) for c in checks)
    field = _DATE_FIELD[name]
    return lambda v: any(c(v.times[field]) for c in checks)


def case_by_id(space: ProjectSpace, case_id: str) -> tuple[int, CaseState | None] | None:
    """The (index, state) of a case of this space, or None."""
    parsed = parse_id(case_id)
    if parsed is None or parsed[0] != space.cases.tag:
        return None
    exists, state = space.cases.lookup(parsed[1])
    return (parsed[1], state) if exists else None


def case_by_external_id(space: ProjectSpace, external_id: str) -> tuple[int, CaseState | None] | None:
    """Households have external ids ``HH-<index + 1>``, patients ``P-<index + 1>``, visits none."""
    prefix, _, number = external_id.partition("-")
    case_type = {"HH": "household", "P": "patient"}.get(prefix)
    if case_type is None or not number.isdigit() or len(number) > 12 or int(number) < 1:
        return None
    index = int(number) - 1
    exists, state = space.cases.lookup(index)
    return (index, state) if exists and SLOT_TYPES[index % FAMILY] == case_type else None


# --- forms -------------------------------------------------------------------------------------


def form_page(space: ProjectSpace, query: FormQuery, cache: ScanCache) -> tuple[int, list[FormDesc]]:
    """(total count, the page of form descriptors) for a Form API query."""
    forms = space.forms
    if forms.irregular:
        # sorted once per revision and filter; a range of the order's own field is then two bisections
        key = ("forms-sorted", space.name, space.revision, query.order_field, query.xmlns, query.app_id,
               query.case_id, query.include_archived)
        times, ordered = cache.get(key, lambda: _sorted_forms(space, query))
        lo, hi, other = 0, len(ordered), []
        for field, side, moment in query.bounds:
            if field != query.order_field:
                other.append((field, side, moment))
            elif side == "start":
                lo = max(lo, bisect.bisect_left(times, moment))
            else:
                hi = min(hi, bisect.bisect_right(times, moment))
        ordered = ordered[lo:max(lo, hi)]
        if other:
            ordered = [p for p in ordered if _within(forms.describe(p), other)]
        total = len(ordered)
        offsets = range(query.offset, min(total, query.offset + query.limit))
        at = (lambda k: ordered[total - 1 - k]) if query.descending else ordered.__getitem__
        return total, [forms.describe(at(k)) for k in offsets]
    start, stop = 0, forms.positions
    for field, side, moment in query.bounds:
        if side == "start":
            start = max(start, forms.first_at_or_after(field, moment))
        else:
            stop = min(stop, forms.first_after(field, moment))
    predicate = _form_predicate(space, query)
    if predicate is None:
        selected = range(start, max(start, stop)) if query.include_archived else forms.unarchived(start, stop)
    else:
        key = ("forms", space.name, space.revision, query.xmlns, query.app_id, query.case_id, query.include_archived)
        positions = cache.get(key, lambda: _scan_forms(forms, predicate, query.include_archived))
        lo, hi = bisect.bisect_left(positions, start), bisect.bisect_left(positions, stop)
        selected = positions[lo:hi] if hi > lo else []
    total = len(selected)
    offsets = range(query.offset, min(total, query.offset + query.limit))
    if query.descending:
        return total, [forms.describe(selected[total - 1 - k]) for k in offsets]
    return total, [forms.describe(selected[k]) for k in offsets]


def _form_predicate(space: ProjectSpace, query: FormQuery) -> Callable[[FormDesc], bool] | None:
    checks: list[Callable[[FormDesc], bool]] = []
    if query.xmlns is not None:
        kinds = {k for k, kind in enumerate(FORM_KINDS) if kind.xmlns == query.xmlns}
        checks.append(lambda d: d.kind in kinds)
    if query.app_id is not None:
        apps = {k for k, app_id in enumerate(space.apps.ids) if app_id == query.app_id}
        checks.append(lambda d: space.forms.app_of(d) in apps)
    if query.case_id is not None:
        found = case_by_id(space, query.case_id)
        wanted = found[0] if found else -1
        checks.append(lambda d: wanted in d.case_indices())
    if not checks:
        return None
    return lambda d: all(c(d) for c in checks)


def _scan_forms(forms: FormSpace, predicate: Callable[[FormDesc], bool], include_archived: bool) -> array:
    found = array("q")
    for position in range(forms.positions):
        d = forms.describe(position)
        if (include_archived or not d.archived) and predicate(d):
            found.append(position)
    return found


def _within(d: FormDesc, bounds) -> bool:
    times = (d.received, d.indexed, d.server)
    return all(times[f] >= moment if side == "start" else times[f] <= moment for f, side, moment in bounds)


def _sorted_forms(space: ProjectSpace, query: FormQuery) -> tuple[array, array]:
    """(the times of the query's order field, the positions) of the live forms its filters select, date
    bounds left out, in the order of that field (ties by position): for a space whose positions are no
    longer in the order of every time field."""
    forms = space.forms
    predicate = _form_predicate(space, query)
    selected = []
    for position in forms.live_positions():
        d = forms.describe(position)
        if (d.archived and not query.include_archived) or (predicate is not None and not predicate(d)):
            continue
        selected.append(((d.received, d.indexed, d.server)[query.order_field], position))
    selected.sort()
    return array("q", (t for t, _ in selected)), array("q", (position for _, position in selected))


def form_by_id(space: ProjectSpace, form_id: str) -> FormDesc | None:
    parsed = parse_id(form_id)
    if parsed is None or parsed[0] != space.forms.tag:
        return None
    return space.forms.current(parsed[1])
