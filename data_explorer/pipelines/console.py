"""The terminal view of a run: a live progress display, then a summary table."""

from __future__ import annotations

import shutil
import sys
from typing import Any, TextIO

from data_explorer.pipelines.reporters import Throttle
from data_explorer.pipelines.status import RunStatus


def _bar(current: int, width: int = 24) -> str:
    filled = int(width * current / 100)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _source_line(name: str, info: dict[str, Any]) -> str:
    rows, total = info.get("rows", 0), info.get("total")
    of = f" of ~{total:,}" if isinstance(total, int) else ""
    rate = f"  {info['rate']:,.0f}/s" if info.get("rate") else ""
    return f"  load {name:<10} {info.get('state', ''):<9} {rows:>10,} rows{of}{rate}"


def status_lines(status: RunStatus) -> list[str]:
    """What the live display shows for a status. Pure."""
    lines = [f"{status.domain}: {status.phase:<12} {_bar(status.progress['current'])} {status.progress['current']:>3}%"]
    discover = status.phases.get("discover") or {}
    if discover:
        lines.append(
            f"  discover   {discover.get('state', ''):<9} {discover.get('apps', 0)} apps, "
            f"{discover.get('case_types', 0)} case types, {discover.get('forms', 0)} forms"
        )
    for name, info in (status.phases.get("load") or {}).items():
        lines.append(_source_line(name, info))
    transform = status.phases.get("transform") or {}
    if transform.get("models"):
        done = sum(1 for m in transform["models"].values() if m.get("state") == "success")
        lines.append(f"  transform  {transform.get('state', ''):<9} {done} of {transform.get('total', '?')} models")
    lines.append(f"  {status.progress['message']}")
    return lines


class ConsoleReporter:
    """Redraws in place on a terminal; prints a line per change (at most every few seconds) otherwise."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._throttle = Throttle(0.2 if self.live else 3.0)
        self._drawn = 0
        self._last_message = None

    def report(self, status: RunStatus, *, important: bool = False) -> None:
        if not self._throttle.due(important):
            return
        if self.live:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            lines = [line[:width] for line in status_lines(status)]
            if self._drawn:
                self.stream.write(f"\x1b[{self._drawn}F")
            for line in lines:
                self.stream.write("\x1b[2K" + line + "\n")
            self._drawn = len(lines)
        else:
            message = f"[{status.progress['current']:>3}%] {status.phase}: {status.progress['message']}"
            if message != self._last_message:
                self.stream.write(message + "\n")
                self._last_message = message
        self.stream.flush()

    def close(self) -> None:
        pass


def format_table(headers: tuple[str, ...], rows: list[tuple], right: tuple[int, ...] = ()) -> str:
    """A plain-text table; columns listed in ``right`` are right-aligned. Pure."""
    cells = [tuple("" if v is None else f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v) for v in row) for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]

    def line(values) -> str:
        return "  ".join(f"{v:>{w}}" if i in right else f"{v:<{w}}" for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


def summary_table(status: RunStatus) -> str:
    """The end-of-run table: rows per source, models built, time. Pure."""
    discover = status.phases.get("discover") or {}
    rows: list[tuple] = [
        ("discover", f"{discover.get('case_types', 0)} case types", f"{discover.get('forms', 0)} forms", f"{discover.get('seconds', 0):.1f}s")
    ]
    for name, info in (status.phases.get("load") or {}).items():
        detail = info.get("mode", "")
        if info.get("deleted"):
            detail += f", {info['deleted']:,} removed"
        if info.get("replaced"):
            detail += f", {info['replaced']:,} unstorable characters replaced"
        if info.get("reread"):
            detail += f", look-back re-read {info['reread']:,} ({info.get('reread_new', 0):,} new)"
        counts = info.get("counts") or {}
        if counts.get("server") is not None:
            detail += f", server {counts['server']:,}, stored {counts['stored']:,}"
            if counts.get("missing"):
                detail += f" (INCOMPLETE: {counts['missing']:,} missing)"
        rows.append((f"load {name}", f"{info.get('rows', 0):,} rows", detail, f"{info.get('seconds', 0):.1f}s"))
    transform = status.phases.get("transform") or {}
    for name, model in (transform.get("models") or {}).items():
        count = "" if model.get("rows") is None else f"{model['rows']:,} rows"
        rows.append((f"model {name}", count, model.get("state", ""), f"{model.get('seconds', 0):.1f}s"))
    total = (status.completed_at - status.started_at).total_seconds() if status.completed_at and status.started_at else 0
    table = format_table(("step", "result", "detail", "time"), rows, right=(1, 3))
    return f"{table}\n{status.phase} in {total:.1f}s (run {status.run_id})"
