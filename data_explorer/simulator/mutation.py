"""What one change of a project space asks for: the body of ``POST /_sim/mutate``, checked. Pure.

Counts pick records at random (from the space's seeded stream, so the same
calls give the same records); id lists name them. ``late_by`` gives the
mutation's records stamps that many seconds earlier than its own instant
(indexed late: earlier than records already served), and ``visible_after``
keeps the whole mutation out of sight until that many further list requests
(Case API v2 or Form API list) of the space were answered.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

COUNTS = ("update_cases", "new_cases", "new_forms", "delete_cases", "delete_forms", "archive_forms", "unarchive_forms")
ID_LISTS = ("update_case_ids", "delete_case_ids", "delete_form_ids", "archive_form_ids", "unarchive_form_ids")


@dataclass(frozen=True)
class Mutation:
    update_cases: int = 0
    """Existing live cases to update at random: a new version, moved to the end of the order."""
    new_cases: int = 0
    new_forms: int = 0
    """New forms, about the cases this mutation touches (creating the new ones), else about random live cases."""
    delete_cases: int = 0
    delete_forms: int = 0
    archive_forms: int = 0
    """Live unarchived forms to archive at random (each is indexed again, later)."""
    unarchive_forms: int = 0
    """Archived forms to unarchive at random (each is indexed again, later)."""
    update_case_ids: tuple[str, ...] = ()
    delete_case_ids: tuple[str, ...] = ()
    delete_form_ids: tuple[str, ...] = ()
    archive_form_ids: tuple[str, ...] = ()
    unarchive_form_ids: tuple[str, ...] = ()
    late_by: float = 0.0
    """Seconds the mutation's stamps lie before its own instant (whole milliseconds are kept)."""
    visible_after: int = 0
    """Further list requests of the space before the mutation is seen; 0: at once."""

    def __post_init__(self) -> None:
        for name in (*COUNTS, "visible_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        for name in ID_LISTS:
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} must be a list of ids (strings)")
            object.__setattr__(self, name, tuple(value))
        if isinstance(self.late_by, bool) or not isinstance(self.late_by, (int, float)) or not 0 <= self.late_by < 1e9:
            raise ValueError("late_by must be a non-negative number of seconds")

    @property
    def size(self) -> int:
        return sum(getattr(self, name) for name in COUNTS) + sum(len(getattr(self, name)) for name in ID_LISTS)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Mutation":
        """From the body of ``POST /_sim/mutate`` less its ``domain``. ValueError when malformed."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}; known: domain, {', '.join(sorted(known))}")
        values = dict(data)
        for name in ID_LISTS:
            if name in values and not isinstance(values[name], list):
                raise ValueError(f"{name} must be a list of ids (strings)")
        return cls(**values)
