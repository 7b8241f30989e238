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


def summary_table(status: RunStatus) -> str:
    """The end-of-run table: rows per source, models built, time. Pure."""
    rows: list[tuple[str, str, str, str]] = []
    for name, info in (status.phases.get("load") or {}).items():
        detail = info.get("mode", "")
        if info.get("deleted"):
            detail += f", {info['deleted']:,} removed"
        rows.append((f"load {name}", f"{info.get('rows', 0):,} rows", detail, f"{info.get('seconds', 0):.1f}s"))
    transform = status.phases.get("transform") or {}
    for name, model in (transform.get("models") or {}).items():
        count = "" if model.get("rows") is None else f"{model['rows']:,} rows"
        rows.append((f"model {name}", count, model.get("state", ""), f"{model.get('seconds', 0):.1f}s"))
    discover = status.phases.get("discover") or {}
    head = [("discover", f"{discover.get('case_types', 0)} case types", f"{discover.get('forms', 0)} forms", f"{discover.get('seconds', 0):.1f}s")]
    rows = head + rows
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out = [f"{'step':<{widths[0]}}  {'result':>{widths[1]}}  {'detail':<{widths[2]}}  {'time':>{widths[3]}}"]
    out.append("-" * (sum(widths) + 6))
    for r in rows:
        out.append(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}")
    total = (status.completed_at - status.started_at).total_seconds() if status.completed_at and status.started_at else 0
    out.append("-" * (sum(widths) + 6))
    out.append(f"{status.phase} in {total:.1f}s (run {status.run_id})")
    return "\n".join(out)
