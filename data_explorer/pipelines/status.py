"""The status of one run: phase, per-phase detail, overall progress. Plain data.

The same shape is written to the control table in embedded mode and to the
MaterializationRun status on Kubernetes. Progress is a percentage that only
ever grows, with a message for the current step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

PHASES = ("Pending", "Discovering", "Loading", "Transforming", "Succeeded", "Failed", "Cancelled")
TERMINAL = ("Succeeded", "Failed", "Cancelled")

# The MaterializationRun state machine (design.md §3).
RUN_TRANSITIONS: dict[str, frozenset[str]] = {
    "Pending": frozenset({"Discovering", "Failed", "Cancelled"}),
    "Discovering": frozenset({"Loading", "Failed", "Cancelled"}),
    "Loading": frozenset({"Transforming", "Failed", "Cancelled"}),
    "Transforming": frozenset({"Succeeded", "Failed", "Cancelled"}),
    "Succeeded": frozenset(),
    "Failed": frozenset(),
    "Cancelled": frozenset(),
}


class IllegalTransition(RuntimeError):
    pass


def check_transition(machine: dict[str, frozenset[str]], old: str, new: str, what: str) -> None:
    if new == old:
        return
    if old not in machine or new not in machine[old]:
        allowed = ", ".join(sorted(machine.get(old, ()))) or "nothing"
        raise IllegalTransition(f"{what} cannot go from {old} to {new} (from {old}: {allowed})")


# Share of the overall progress each phase covers, in percent.
SPANS = {"Discovering": (0, 5), "Loading": (5, 75), "Transforming": (75, 99)}


def incomplete_sources(load: dict[str, Any]) -> dict[str, str]:
    """Source -> its shortfall in words, for each source whose last full pass stored fewer records than
    CommCare reported."""
    short = {}
    for name, entry in load.items():
        counts = entry.get("counts") if isinstance(entry, dict) else None
        if isinstance(counts, dict) and counts.get("missing"):
            short[name] = f"{name}: server {counts['server']:,}, stored {counts['stored']:,} ({counts['missing']:,} missing)"
    return short


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class RunStatus:
    run_id: str
    domain: str
    pipeline: str
    mode: str
    phase: str = "Pending"
    phases: dict[str, Any] = field(default_factory=lambda: {"discover": {}, "load": {}, "transform": {}})
    progress: dict[str, Any] = field(default_factory=lambda: {"current": 0, "total": 100, "message": "waiting to start"})
    error: dict[str, str] | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None

    def enter(self, phase: str, message: str) -> None:
        if phase not in PHASES:
            raise ValueError(phase)
        check_transition(RUN_TRANSITIONS, self.phase, phase, f"run {self.run_id}")
        self.phase = phase
        if phase == "Discovering" and self.started_at is None:
            self.started_at = utcnow()
        if phase in TERMINAL:
            self.completed_at = utcnow()
        start = SPANS.get(phase, (100, 100))[0] if phase != "Succeeded" else 100
        if phase in ("Failed", "Cancelled"):
            start = self.progress["current"]
        self.advance(start, message)

    def advance(self, percent: float, message: str) -> None:
        """Move progress forward (never back) and set the step's message."""
        current = max(self.progress["current"], min(100, int(percent)))
        self.progress = {"current": current, "total": 100, "message": message}

    def within(self, phase: str, fraction: float, message: str) -> None:
        low, high = SPANS[phase]
        self.advance(low + (high - low) * max(0.0, min(1.0, fraction)), message)

    def fail(self, code: str, message: str, phase: str = "Failed") -> None:
        self.error = {"code": code, "message": message}
        self.enter(phase, message)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("started_at", "completed_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data
