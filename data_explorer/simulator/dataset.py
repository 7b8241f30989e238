"""Project spaces: their cases, forms, users and apps, and how they change over time.

Data version 0 spans 2024 (``START`` to ``START + SPAN``). Mutation number
``m`` of a space happens at the virtual instant ``START + SPAN + 1 day + m
hours`` and gives each change its own millisecond from there, so every change
is later than everything before it and the same calls give the same data.
"""

from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Any

from data_explorer.simulator.apps import AppSet
from data_explorer.simulator.cases import CaseSpace
from data_explorer.simulator.config import DomainConfig, SimulatorConfig, WebUser
from data_explorer.simulator.forms import FormSpace
from data_explorer.simulator.synth import DAY_US, US, fmt_ts, stable_hash, to_us
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
        self.version = 0

    def mutate(self, update_cases: int = 0, new_cases: int = 0, new_forms: int = 0) -> dict[str, Any]:
        """Update existing cases, create new ones, and submit forms that create or update them.

        Forms are about the touched cases in turn (the new ones are created by
        them); with no touched case they update random existing ones.
        """
        for name, count in (("update_cases", update_cases), ("new_cases", new_cases), ("new_forms", new_forms)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        if update_cases + new_cases + new_forms > MAX_CHANGES:
            raise ValueError(f"at most {MAX_CHANGES} changes per mutation")
        self.version += 1
        clock = START + SPAN + DAY_US + self.version * MUTATION_STEP
        rng = random.Random(stable_hash(self.seed, self.name, "mutation", self.version))
        cases = self.cases
        updated = rng.sample(range(cases.n_total), min(update_cases, cases.n_total))
        created = list(range(cases.n_total, cases.n_total + new_cases))
        touched = updated + created
        for step, index in enumerate(touched):
            cases.touch(index, clock + step * CHANGE_STEP)
        new_set = frozenset(created)
        form_ids = []
        clock += len(touched) * CHANGE_STEP
        for q in range(new_forms if cases.n_total else 0):
            primary = touched[q % len(touched)] if touched else rng.randrange(cases.n_total)
            desc = self.forms.add(primary, new_set if q < len(touched) else frozenset(), clock + q * CHANGE_STEP * 3)
            form_ids.append(self.forms.form_id(desc.number))
        return {
            "domain": self.name,
            "version": self.version,
            "changed_from": fmt_ts(START + SPAN + DAY_US + self.version * MUTATION_STEP),
            "updated_case_ids": [cases.case_id(i) for i in updated],
            "new_case_ids": [cases.case_id(i) for i in created],
            "new_form_ids": form_ids,
        }

    def state(self) -> dict[str, Any]:
        """Counts: ``forms`` includes the archived ones (listed with ``include_archived``), ``users`` does not
        (the User API lists deactivated workers only with ``archived=true``); ``web_users`` are listed by
        the Web User API."""
        forms, users = self.forms, self.users
        archived_forms = forms.archived_before(forms.n_base)
        archived_users = len(users.inactive)
        return {
            "version": self.version,
            "cases": self.cases.n_total,
            "cases_updated": len(self.cases.states) - (self.cases.n_total - self.cases.n_base),
            "forms": forms.positions,
            "forms_archived": archived_forms,
            "users": users.count - archived_users,
            "users_archived": archived_users,
            "web_users": len(users.web),
            "apps": len(self.apps.ids),
        }


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

    def mutate(self, domain: str, **counts: int) -> dict[str, Any]:
        result = self.spaces[domain].mutate(**counts)
        self.version += 1
        return {**result, "data_version": self.version}

    def state(self) -> dict[str, Any]:
        return {"data_version": self.version, "domains": {name: s.state() for name, s in self.spaces.items()}}
