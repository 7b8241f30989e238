"""Project spaces: their cases, forms, users and apps, and how they change over time.

Data version 0 spans 2024 (``START`` to ``START + SPAN``). Mutation number
``m`` of a space happens at the virtual instant ``START + SPAN + 1 day + m
hours`` and gives each change its own millisecond from there, so every change
is later than everything before it and the same calls give the same data. A
mutation indexed late (``late_by``) stamps its changes earlier, and one seen
late (``visible_after``) waits for that many list requests of its space.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from data_explorer.simulator.apps import AppSet
from data_explorer.simulator.cases import CaseSpace
from data_explorer.simulator.config import DomainConfig, SimulatorConfig, WebUser
from data_explorer.simulator.forms import FormSpace
from data_explorer.simulator.mutation import Mutation
from data_explorer.simulator.synth import DAY_US, US, fmt_ts, parse_id, stable_hash, to_us
from data_explorer.simulator.users import UserSpace, api_user_ids

START = to_us(datetime(2024, 1, 1, tzinfo=timezone.utc))
SPAN = 365 * DAY_US
MUTATION_STEP = 3600 * US
CHANGE_STEP = 1000  # microseconds between two changes of one mutation
MAX_CHANGES = 1_000_000  # changes per mutation: they must fit in MUTATION_STEP


class ProjectSpace:
    def __init__(self, config: DomainConfig, seed: int, members: list[tuple[str, WebUser]] = ()):
        """``members``: (id, user) of the configured API users who belong to the space."""
        self.config = config
        self.name = config.name
        self.seed = seed
        self.deprecated = frozenset(config.deprecated_case_types)
        self.users = UserSpace(seed, config, list(members), START + SPAN)
        owners = self.users.owners
        self.cases = CaseSpace(seed, config.name, config.cases, [user_id for user_id, _ in owners], START, SPAN)
        self.apps = AppSet(seed, config, START)
        self.forms = FormSpace(
            seed, config, self.cases, self.apps.ids, self.apps.build_ids, self.apps.versions, owners, START, SPAN,
        )
        self.version = 0  # mutations made: each has its own instant
        self.revision = 0  # changes applied (mutations and late ones made visible): what caches are keyed by
        self.list_requests = 0
        self.pending: list[tuple[int, Callable[[], None]]] = []  # (list requests due, the change), in order
        self.cases_deleted = 0

    def mutate(self, update_cases: int = 0, new_cases: int = 0, new_forms: int = 0, **changes: Any) -> dict[str, Any]:
        """Apply a ``Mutation`` (its fields as keywords); ValueError when it asks for what cannot be.

        Changes indexed late by an earlier mutation become visible first: one change at a time, in order.
        """
        m = Mutation(update_cases=update_cases, new_cases=new_cases, new_forms=new_forms, **changes)
        if m.size > MAX_CHANGES:
            raise ValueError(f"at most {MAX_CHANGES} changes per mutation")
        self.release(everything=True)
        instant = START + SPAN + DAY_US + (self.version + 1) * MUTATION_STEP
        back = round(m.late_by * 1000) * 1000
        if back and instant - back <= START + SPAN:
            most = (instant - START - SPAN) // 1000 / 1000 - 0.001
            raise ValueError(f"late_by {m.late_by} reaches back into the base data; at most {most:.3f} seconds now")
        plan = self._plan(m, random.Random(stable_hash(self.seed, self.name, "mutation", self.version + 1)))
        self.version += 1
        apply = functools.partial(self._apply, plan, instant - back)
        if m.visible_after:
            self.pending.append((self.list_requests + m.visible_after, apply))
        else:
            apply()
        cases, forms = self.cases, self.forms
        return {
            "domain": self.name,
            "version": self.version,
            "changed_from": fmt_ts(instant - back),
            "updated_case_ids": [cases.case_id(i) for i in plan.updated],
            "new_case_ids": [cases.case_id(i) for i in plan.created],
            "new_form_ids": [forms.form_id(plan.first_form + q) for q in range(len(plan.form_cases))],
            "deleted_case_ids": [cases.case_id(i) for i in plan.deleted_cases],
            "deleted_form_ids": [forms.form_id(n) for n in plan.deleted_forms],
            "archived_form_ids": [forms.form_id(n) for n, archived in plan.archive if archived],
            "unarchived_form_ids": [forms.form_id(n) for n, archived in plan.archive if not archived],
            "late_by": back / US,
            "visible": not m.visible_after,
        }

    def _plan(self, m: Mutation, rng: random.Random) -> "_Plan":
        """Which records the mutation changes. The random picks come in the order they always came, so the
        mutations that existed before deletions pick the same records."""
        cases, forms = self.cases, self.forms
        named_updates = [self._case_index(i, "update_case_ids") for i in m.update_case_ids]
        named_deletes = [self._case_index(i, "delete_case_ids") for i in m.delete_case_ids]
        if set(named_updates) & set(named_deletes) or len(set(named_deletes)) < len(named_deletes):
            raise ValueError("a case is named twice (updated and deleted, or deleted twice)")
        if not self.cases_deleted and not named_updates and not named_deletes:
            updated = rng.sample(range(cases.n_total), min(m.update_cases, cases.n_total))
            pool = None
        else:
            named = set(named_updates) | set(named_deletes)
            pool = [i for i in range(cases.n_total) if cases.is_live(i) and i not in named]
            updated = list(dict.fromkeys(named_updates)) + rng.sample(pool, min(m.update_cases, len(pool)))
        created = list(range(cases.n_total, cases.n_total + m.new_cases))
        touched = updated + created
        n_after = cases.n_total + m.new_cases
        form_cases = []
        for q in range(m.new_forms if n_after else 0):
            if touched:
                form_cases.append(touched[q % len(touched)])
            elif pool is None:
                form_cases.append(rng.randrange(n_after))
            elif pool:
                form_cases.append(rng.choice(pool))
        deleted_cases = named_deletes
        if m.delete_cases:
            taken = set(touched) | set(named_deletes)
            live = [i for i in (pool if pool is not None else range(cases.n_total)) if i not in taken]
            deleted_cases = named_deletes + rng.sample(live, min(m.delete_cases, len(live)))
        deleted_forms, archive = self._plan_forms(m, rng)
        return _Plan(updated, created, frozenset(created), form_cases, forms.next_number, deleted_cases, deleted_forms,
                     archive)

    def _plan_forms(self, m: Mutation, rng: random.Random) -> tuple[list[int], list[tuple[int, bool]]]:
        """(forms to delete, (form, archived) to archive or unarchive)."""
        forms = self.forms
        named = {name: [self._form_number(i, name) for i in getattr(m, name)]
                 for name in ("delete_form_ids", "archive_form_ids", "unarchive_form_ids")}
        everything = [n for numbers in named.values() for n in numbers]
        if len(set(everything)) < len(everything):
            raise ValueError("a form is named twice")
        for name, wanted in (("archive_form_ids", False), ("unarchive_form_ids", True)):
            for number in named[name]:
                if forms.archived_state(number) != wanted:
                    state = "archived" if wanted else "not archived"
                    raise ValueError(f"{name}: form {forms.form_id(number)} is {state}")
        if not (m.delete_forms or m.archive_forms or m.unarchive_forms):
            return named["delete_form_ids"], [(n, True) for n in named["archive_form_ids"]] + \
                [(n, False) for n in named["unarchive_form_ids"]]
        taken = set(everything)
        live = [(n, archived) for n in range(forms.next_number) if n not in taken
                for archived in (forms.archived_state(n),) if archived is not None]
        to_delete = rng.sample(live, min(m.delete_forms, len(live)))
        taken |= {n for n, _ in to_delete}
        unarchived = [n for n, archived in live if not archived and n not in taken]
        to_archive = rng.sample(unarchived, min(m.archive_forms, len(unarchived)))
        archived = [n for n, archived in live if archived and n not in taken]
        to_unarchive = rng.sample(archived, min(m.unarchive_forms, len(archived)))
        deleted = named["delete_form_ids"] + [n for n, _ in to_delete]
        changes = [(n, True) for n in named["archive_form_ids"] + to_archive]
        changes += [(n, False) for n in named["unarchive_form_ids"] + to_unarchive]
        return deleted, changes

    def _case_index(self, case_id: str, name: str) -> int:
        parsed = parse_id(case_id)
        if parsed is None or parsed[0] != self.cases.tag or not self.cases.is_live(parsed[1]):
            raise ValueError(f"{name}: {case_id!r} is no live case of {self.name}")
        return parsed[1]

    def _form_number(self, form_id: str, name: str) -> int:
        parsed = parse_id(form_id)
        if parsed is None or parsed[0] != self.forms.tag or self.forms.archived_state(parsed[1]) is None:
            raise ValueError(f"{name}: {form_id!r} is no live form of {self.name}")
        return parsed[1]

    def _apply(self, plan: "_Plan", clock: int) -> None:
        cases, forms = self.cases, self.forms
        touched = plan.updated + plan.created
        for step, index in enumerate(touched):
            cases.touch(index, clock + step * CHANGE_STEP)
        clock += len(touched) * CHANGE_STEP
        for q, primary in enumerate(plan.form_cases):
            forms.add(primary, plan.new_set if q < len(touched) else frozenset(), clock + q * CHANGE_STEP * 3)
        clock += len(plan.form_cases) * CHANGE_STEP * 3
        for r, (number, archived) in enumerate(plan.archive):
            forms.set_archived(number, archived, clock + r * CHANGE_STEP * 3)
        for index in plan.deleted_cases:
            cases.delete(index)
        for number in plan.deleted_forms:
            forms.delete(number)
        self.cases_deleted += len(plan.deleted_cases)
        self.revision += 1

    def release(self, everything: bool = False) -> bool:
        """Make visible the late changes that are due (all of them when ``everything``); whether any was."""
        released = False
        while self.pending and (everything or self.pending[0][0] <= self.list_requests):
            self.pending.pop(0)[1]()
            released = True
        return released

    def list_request(self) -> bool:
        """A list request is being answered: make due changes visible first, then count it. Whether any was."""
        released = self.release()
        self.list_requests += 1
        return released

    def state(self) -> dict[str, Any]:
        """Counts: ``forms`` includes the archived ones (listed with ``include_archived``), ``users`` does not
        (the User API lists deactivated workers only with ``archived=true``); ``web_users`` are listed by
        the Web User API. Late changes not yet visible are not counted."""
        forms, users, cases = self.forms, self.users, self.cases
        live_forms, archived_forms = forms.counts()
        archived_users = len(users.inactive)
        return {
            "version": self.version,
            "cases": cases.n_total - self.cases_deleted,
            "cases_updated": sum(1 for st in cases.states.values() if not st.new and not st.deleted),
            "cases_deleted": self.cases_deleted,
            "forms": live_forms,
            "forms_archived": archived_forms,
            "forms_deleted": len(forms.deleted),
            "users": users.count - archived_users,
            "users_archived": archived_users,
            "web_users": len(users.web),
            "apps": len(self.apps.ids),
            "pending_changes": len(self.pending),
        }


@dataclass(frozen=True)
class _Plan:
    updated: list[int]
    created: list[int]
    new_set: frozenset[int]
    form_cases: list[int]  # the case each new form is about
    first_form: int  # the number of the first new form
    deleted_cases: list[int]
    deleted_forms: list[int]
    archive: list[tuple[int, bool]]  # (form number, archived after)


class Dataset:
    """Every project space of a simulator, and which space a record id belongs to."""

    def __init__(self, config: SimulatorConfig):
        self.config = config
        self.reset()

    def reset(self) -> None:
        ids = api_user_ids(self.config)
        self.spaces = {
            d.name: ProjectSpace(d, self.config.seed, [(ids[u.username], u) for u in self.config.users if d.name in u.domains])
            for d in self.config.domains
        }
        self.case_tags = {space.cases.tag: name for name, space in self.spaces.items()}
        self.form_tags = {space.forms.tag: name for name, space in self.spaces.items()}
        self.version = 0

    def mutate(self, domain: str, **changes: Any) -> dict[str, Any]:
        result = self.spaces[domain].mutate(**changes)
        self.version += 1
        return {**result, "data_version": self.version}

    def state(self) -> dict[str, Any]:
        return {"data_version": self.version, "domains": {name: s.state() for name, s in self.spaces.items()}}
