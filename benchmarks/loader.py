"""Load throughput, peak memory and incremental cost of `data-explorer materialize`.

    python benchmarks/loader.py [--sizes 20000,100000] [--forms-ratio 0.25] [--server DSN]

For each size, a simulator serves a project space of that many cases in a child
process; in the same run the benchmark measures

- fetch-only: a client that downloads the same pages (same page sizes, forms paged by
  ``indexed_on`` as the loader pages them) and parses them (orjson, as the loader does) and
  discards them;
- the runner: `data-explorer materialize` in a child process (its peak RSS from wait4),
  with the load rate of each source taken from the run's status;
- incremental: the same command after 1% of the cases changed.

Prints a table and writes JSON to benchmarks/results/loader.json. PostgreSQL is
`--server` (default: DATABASE_URL, else 127.0.0.1:5432 as postgres); each size
works in a fresh database that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import httpx
import orjson
import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from simulator_process import start_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
USER, KEY = "demo@example.org", "demo-api-key"
AUTH = {"Authorization": f"ApiKey {USER}:{KEY}"}
CASE_PAGE, FORM_PAGE = 5000, 1000


def pages(client: httpx.Client, base: str) -> Iterator[tuple[str, list, bytes]]:
    """("cases" or "forms", the page's records, its body) for every page, with the loader's page sizes and paging."""
    url, params = f"{base}/a/bench/api/case/v2/", {"limit": CASE_PAGE}
    while url:
        raw = client.get(url, params=params).content
        body = orjson.loads(raw)
        yield "cases", body["cases"], raw
        url, params = body.get("next"), None
    # forms page by date from the last instant seen, as the loader does (offsets grow costly on the server)
    start, offset = None, 0
    while True:
        params = {"limit": FORM_PAGE, "offset": offset, "order_by": "indexed_on", "include_archived": "true"}
        if start is not None:
            params["indexed_on_start"] = start
        raw = client.get(f"{base}/a/bench/api/v0.5/form/", params=params).content
        page = orjson.loads(raw)["objects"]
        yield "forms", page, raw
        if len(page) < FORM_PAGE:
            return
        instants = {datetime.fromisoformat(f["indexed_on"]) for f in page}
        last = max(instants).astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")
        start, offset = last, (offset + len(page) if len(instants) == 1 and last == start else 0)


def rates(timed: Iterator[tuple]) -> dict[str, float]:
    """cases_per_s and forms_per_s of a stream of pages, all cases coming before the forms."""
    counts, seconds = {"cases": 0, "forms": 0}, {}
    started = time.perf_counter()
    for kind, records, *_ in timed:
        if kind == "forms" and "cases" not in seconds:
            seconds["cases"], started = time.perf_counter() - started, time.perf_counter()
        counts[kind] += len(records)
    seconds["forms"] = time.perf_counter() - started
    return {f"{kind}_per_s": counts[kind] / seconds[kind] for kind in counts}


def fetch_only(base: str) -> dict[str, float]:
    """Download and parse every page of cases and forms, discarding them."""
    with httpx.Client(headers=AUTH, timeout=120) as client:
        return rates(pages(client, base))


def materialize(env: dict[str, str]) -> tuple[float, float]:
    """Run the CLI; return (seconds, peak RSS in MB)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "data_explorer.cli", "materialize", "--domain", "bench"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"materialize failed: {proc.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def last_run(dsn: str) -> dict:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT phases FROM data_explorer.runs WHERE domain = 'bench' ORDER BY created_at DESC LIMIT 1"
        ).fetchone()[0]


# --- shared with the other benchmarks -------------------------------------------------------------


def new_tag() -> str:
    """A name for one workspace's database and role prefix (at most 7 characters)."""
    return "b" + secrets.token_hex(3)


@contextlib.contextmanager
def database(server: str, tag: str):
    """A fresh database; dropped afterwards, with the roles whose names start with ``tag``."""
    name = f"de_bench_{tag}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(**{**conninfo_to_dict(server), "dbname": name})
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for (role,) in admin.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (f"{tag}\\_%",)).fetchall():
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@contextlib.contextmanager
def workspace(server: str, tag: str, base: str):
    """A fresh database and data directory, and the environment `data-explorer` runs with in them."""
    home = tempfile.mkdtemp(prefix="de-bench-")
    try:
        with database(server, tag) as dsn:
            yield dsn, {**os.environ, "DATABASE_URL": dsn, "DATA_EXPLORER_HOME": home, "DATA_EXPLORER_ROLE_PREFIX": tag,
                        "COMMCARE_BASE_URL": base, "COMMCARE_USERNAME": USER, "COMMCARE_API_KEY": KEY,
                        "COMMCARE_CASE_PAGE_SIZE": str(CASE_PAGE), "COMMCARE_FORM_PAGE_SIZE": str(FORM_PAGE)}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def download(n_cases: int, n_forms: int) -> tuple[dict[str, list[bytes]], dict[str, float], dict[str, float]]:
    """Every page's body by kind (the fetch-only client's paging), and for each kind the simulator's
    CPU seconds and the seconds the pages took to arrive."""
    sim, base = start_server(n_cases, n_forms)
    try:
        proc = psutil.Process(sim.pid)
        bodies: dict[str, list[bytes]] = {"cases": [], "forms": []}
        cpu = {"cases": 0.0, "forms": 0.0}
        seconds = {"cases": 0.0, "forms": 0.0}

        def sim_cpu() -> float:
            return sum(proc.cpu_times()[:2])

        with httpx.Client(headers=AUTH, timeout=120) as client:
            cpu0, t0 = sim_cpu(), time.perf_counter()
            for kind, _, body in pages(client, base):  # what passed since the last page was spent on this one
                cpu1, t1 = sim_cpu(), time.perf_counter()
                cpu[kind] += cpu1 - cpu0
                seconds[kind] += t1 - t0
                bodies[kind].append(body)
                cpu0, t0 = cpu1, t1
        return bodies, cpu, seconds
    finally:
        sim.kill()
        sim.wait()


def measure(size: int, forms: int, server: str) -> dict:
    sim, base = start_server(size, forms)
    try:
        with workspace(server, new_tag(), base) as (dsn, env):
            baseline = fetch_only(base)
            full_s, rss = materialize(env)
            phases = last_run(dsn)
            load = phases["load"]
            httpx.post(f"{base}/_sim/mutate", json={"domain": "bench", "update_cases": max(1, size // 100)}).raise_for_status()
            incr_s, _ = materialize(env)
            incr = last_run(dsn)["load"]
            return {
                "cases": size,
                "forms": forms,
                "fetch_cases_per_s": baseline["cases_per_s"],
                "fetch_forms_per_s": baseline["forms_per_s"],
                "load_cases_per_s": load["cases"]["rows"] / load["cases"]["seconds"],
                "load_forms_per_s": load["forms"]["rows"] / load["forms"]["seconds"],
                "full_seconds": full_s,
                "transform_seconds": phases["transform"].get("seconds"),
                "peak_rss_mb": rss,
                "incremental_seconds": incr_s,
                "incremental_cases": incr["cases"]["rows"],
            }
    finally:
        sim.kill()
        sim.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000", help="comma-separated case counts")
    parser.add_argument("--forms-ratio", type=float, default=0.25, help="forms per case (default 0.25)")
    parser.add_argument("--server", default=os.environ.get("DATABASE_URL", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = [measure(n, int(n * args.forms_ratio), args.server) for n in sizes]
    header = ("cases", "forms", "fetch-only cases/s", "load cases/s", "load/fetch", "fetch-only forms/s",
              "load forms/s", "load/fetch", "full run s", "peak RSS MB", "1% incremental s", "incr/full")
    print(" | ".join(header))
    for r in results:
        print(" | ".join([
            f"{r['cases']:,}", f"{r['forms']:,}", f"{r['fetch_cases_per_s']:,.0f}", f"{r['load_cases_per_s']:,.0f}",
            f"{r['load_cases_per_s'] / r['fetch_cases_per_s']:.2f}", f"{r['fetch_forms_per_s']:,.0f}",
            f"{r['load_forms_per_s']:,.0f}", f"{r['load_forms_per_s'] / r['fetch_forms_per_s']:.2f}",
            f"{r['full_seconds']:.1f}", f"{r['peak_rss_mb']:.0f}", f"{r['incremental_seconds']:.1f}",
            f"{r['incremental_seconds'] / r['full_seconds']:.2f}",
        ]))
    if len(results) > 1:
        print(f"peak RSS at {results[-1]['cases']:,} cases / at {results[0]['cases']:,}: "
              f"{results[-1]['peak_rss_mb'] / results[0]['peak_rss_mb']:.2f}x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    out = {"when": datetime.now(timezone.utc).isoformat(), "machine": machine, "results": results}
    (RESULTS / "loader.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
