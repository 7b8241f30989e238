"""Where the CPU of a load goes, each part measured alone: the simulator serving the pages, the
runner loading them, PostgreSQL writing them.

    python benchmarks/cpu_budget.py [--cases 100000] [--forms 100000] [--cpus 2]

1. The simulator serves every page once to a client that keeps the bodies (the fetch-only
   client's paging); its process's CPU is read before and after each kind.
2. The loader's own ``load_source`` loads them again from memory into a fresh database: the
   real sources, paging, checks, case blocks, two writer sessions, upserts and checkpoints,
   with a client that hands back the kept bodies instead of asking the simulator. This
   process's CPU is the runner's (parsing included, HTTP not); the two sessions' backends'
   CPU is PostgreSQL's (read from /proc, so PostgreSQL must run on this machine).

Prints CPU milliseconds per 1,000 records of each kind, and what they imply when all three
share ``--cpus`` CPUs, as in ``run.py``. Step 1 is the fetch-only client of ``run.py`` (same
paging, same parsing), so it also gives the share of a CPU the simulator gets when only a
client waits for it. A load needs all three parts' CPU from the same CPUs, and the simulator
can use at most one; so even with every CPU busy all the time, a load takes at least
max(total / cpus, simulator) seconds, and load / fetch-only is at most fetch-only's seconds over
that: the ceiling column (``both``: cases then forms, as run.py's load phase). Writes
benchmarks/results/cpu_budget.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from typing import Any, Iterator

import psutil
import psycopg
from loader import CASE_PAGE, FORM_PAGE, database, download, new_tag
from psycopg import sql

from data_explorer.loaders import json_codec
from data_explorer.loaders.commcare.sources import CasesSource, FormsSource
from data_explorer.pipelines.loading import load_source
from data_explorer.pipelines.registry import Registry
from data_explorer.pipelines.runner import set_up_writer
from data_explorer.warehouse.raw_tables import ensure_raw_tables

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = Registry.from_directory(ROOT / "pipelines").get("commcare_sync")
KINDS = {"cases": ("cases", CasesSource, CASE_PAGE), "forms": ("forms", FormsSource, FORM_PAGE)}  # source, loader, page size
RAW = "bench__raw"


class Replay:
    """The part of CommCareClient the sources use, answering with kept bodies in order."""

    def __init__(self, bodies: list[bytes]):
        self._bodies: Iterator[bytes] = iter(bodies)

    def get_json(self, url: str, params: dict[str, Any] | None = None, *, what: str) -> dict[str, Any]:
        body = next(self._bodies, None)
        if body is None:
            raise SystemExit(f"{what}: the loader asked for more pages than the simulator served; "
                             "its paging no longer matches benchmarks/loader.py's")
        return json_codec.loads(body)


def backend_cpu(pids: list[int]) -> float:
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load(bodies: dict[str, list[bytes]], dsn: str) -> dict[str, dict[str, float]]:
    """Each kind loaded by the loader from the kept bodies; CPU seconds of the runner and of PostgreSQL."""
    out = {}
    with psycopg.connect(dsn) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(RAW)))
        ensure_raw_tables(admin, RAW, PIPELINE.raw_tables)
        admin.commit()
    sessions = [psycopg.connect(dsn) for _ in range(2)]
    try:
        for conn in sessions:
            set_up_writer(conn)
        pids = [conn.info.backend_pid for conn in sessions]
        try:
            local = all(psutil.Process(pid).name().startswith("postgres") for pid in pids)
        except psutil.Error:
            local = False
        if not local:
            raise SystemExit("PostgreSQL's backends are not processes of this machine, so their CPU cannot be read: "
                             "run against a PostgreSQL on this machine (--server)")
        for kind, (source_name, loader_class, page_size) in KINDS.items():
            loader = loader_class(Replay(bodies[kind]), "bench", page_size)
            runner0, pg0, started = own_cpu(), backend_cpu(pids), time.perf_counter()
            progress = load_source(sessions, RAW, PIPELINE.source(source_name), loader, full=True, on_batch=lambda p: None)
            out[kind] = {"records": progress.rows, "seconds": time.perf_counter() - started,
                         "runner": own_cpu() - runner0, "postgres": backend_cpu(pids) - pg0}
    finally:
        for conn in sessions:
            conn.close()
    return out


def least_seconds(sim: float, runner: float, postgres: float, cpus: int) -> float:
    """The shortest a load can take, from CPU seconds: every CPU busy with the three parts' work, and
    never less than the simulator's own CPU time (it serves one request at a time)."""
    return max((sim + runner + postgres) / cpus, sim)


def measure(n_cases: int, n_forms: int, server: str, cpus: int) -> dict:
    """CPU seconds of each part for each kind (and ``both``), per 1,000 records, and the ceiling."""
    bodies, sim_cpu, fetch_seconds = download(n_cases, n_forms)
    with database(server, new_tag()) as dsn:
        loaded = load(bodies, dsn)
    seconds = {kind: {"records": f["records"], "simulator": sim_cpu[kind], "runner": f["runner"], "postgres": f["postgres"],
                      "fetch_only": fetch_seconds[kind]} for kind, f in loaded.items()}
    seconds["both"] = {key: sum(k[key] for k in seconds.values()) for key in next(iter(seconds.values()))}
    summary: dict = {"cpus": cpus, "kinds": {}}
    for kind, f in seconds.items():
        summary["kinds"][kind] = {
            "cpu_seconds": f,
            "ms_per_1000": {part: f[part] * 1e6 / max(1, f["records"]) for part in ("simulator", "runner", "postgres")},
            "simulator_share_fetch_only": f["simulator"] / f["fetch_only"],
            "ceiling": f["fetch_only"] / least_seconds(f["simulator"], f["runner"], f["postgres"], cpus),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--forms", type=int, default=100_000)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs the three share (default: this machine's)")
    parser.add_argument("--server", default=os.environ.get("DATABASE_URL", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"))
    args = parser.parse_args()
    summary = measure(args.cases, args.forms, args.server, args.cpus)
    rows = []
    for kind, k in summary["kinds"].items():
        parts = k["ms_per_1000"]
        rows.append([kind, f"{k['cpu_seconds']['records']:,}", *(f"{v:.1f}" for v in parts.values()), f"{sum(parts.values()):.1f}",
                     f"{k['simulator_share_fetch_only']:.2f}", f"{k['ceiling']:.2f}"])
    header = ["kind", "records", "simulator ms", "runner ms", "PostgreSQL ms", "total ms",
              "simulator's share of a CPU, fetch-only", f"ceiling on {args.cpus} CPUs"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print("CPU per 1,000 records, each part measured alone; ceiling: the highest load / fetch-only the CPU allows")
    for row in [header, *rows]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu_budget.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
