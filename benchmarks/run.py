"""All benchmarks side by side in one run: load against dlt and the fetch-only limit, memory, incremental, query path.

    python benchmarks/run.py [--quick] [--server DSN]

One simulator project space and one PostgreSQL for everything:

1. Load: the same space (default 100,000 cases and 100,000 forms; --quick 20,000 each)
   downloaded by the fetch-only client (the limit), copied by a plain fetch-and-COPY
   loader (`benchmarks/plain_copy.py`, a yardstick), loaded by `data-explorer materialize`,
   and loaded by dlt's `rest_api` source into dlt's postgres destination
   (`benchmarks/dlt_load.py`, run in its own virtualenv `benchmarks/.dlt-venv` built
   from `benchmarks/requirements-dlt.txt`). The first three run in rounds (default 5,
   --quick 1; ours into a fresh database each round) and the round with the median
   ratio of ours to fetch-only is reported, with every round's ratios beside it.
   Beside it, the ceiling the CPU allows that ratio: the simulator, the runner and
   PostgreSQL measured alone for a space of the same size (`benchmarks/cpu_budget.py`).
2. Memory: peak RSS (wait4) of `materialize` at two sizes (default 100,000 and
   1,000,000 cases; --quick 20,000 and 100,000), with few forms (0.05 per case) to
   keep the time bounded.
3. Incremental: `materialize` again after 1% of the cases changed, against the full run.
4. Query path: the gateway's `query` tool over streamable HTTP (`data-explorer serve
   --transport http` in a child process) from 20 concurrent MCP clients, then the same
   statements straight through psycopg as the tenant's reader on 20 connections.

Prints one table (targets with PASS/MISS) and writes benchmarks/results/summary.json.
The load and incremental helpers are those of benchmarks/loader.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
from loader import CASE_PAGE, FORM_PAGE, KEY, USER, fetch_only, last_run, materialize, new_tag, workspace
from plain_copy import plain_copy
from psycopg.conninfo import conninfo_to_dict
from query_path import STATEMENTS, run_direct, run_mcp, start_gateway
from simulator_process import start_server

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
DLT_VENV = BENCH / ".dlt-venv"
DLT_REQUIREMENTS = BENCH / "requirements-dlt.txt"
DOMAIN = "bench"

TARGETS = {
    "ours_vs_dlt": 5.0,  # at least
    "ours_vs_fetch": 0.70,  # at least
    "rss_growth": 1.3,  # at most
    "rss_big_mb": 300.0,  # at most, at the big size (1,000,000 cases in the full mode)
    "incremental_vs_full": 0.10,  # at most
    "query_errors": 0,  # exactly
    "query_p50_vs_direct": 3.0,  # at most
}


# --- one simulator project space in a fresh database ----------------------------------------------


@dataclass
class Space:
    cases: int
    forms: int
    dsn: str
    base: str
    env: dict[str, str]
    server: str


@contextlib.contextmanager
def space(cases: int, forms: int, server: str):
    """A simulator serving `bench` with this many cases and forms, and a fresh workspace; all removed afterwards."""
    sim, base = start_server(cases, forms)
    try:
        with workspace(server, new_tag(), base) as (dsn, env):
            yield Space(cases, forms, dsn, base, env, server)
    finally:
        sim.kill()
        sim.wait()


# --- dlt, in its own virtualenv ---------------------------------------------------------------------


def _pip_problem(output: str) -> str:
    """The line of pip's output that says why it failed."""
    lines = [line.strip() for line in output.splitlines() if line.strip() and not line.startswith("WARNING:")]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["no output"])[-1][:300]


def dlt_python() -> tuple[Path | None, str]:
    """The virtualenv's interpreter with dlt installed (created or reused), or None and why not."""
    python = DLT_VENV / "bin" / "python"
    stamp = DLT_VENV / ".requirements-sha256"
    wanted = hashlib.sha256(DLT_REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python, "reused"
    if not python.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(DLT_VENV)], capture_output=True, text=True)
        if made.returncode != 0:
            return None, f"python -m venv failed: {_pip_problem(made.stderr + made.stdout)}"
    print(f"installing dlt into {DLT_VENV} ...", flush=True)
    try:
        installed = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(DLT_REQUIREMENTS)],
            capture_output=True, text=True, timeout=1800,
        )
    except subprocess.TimeoutExpired:
        return None, "pip install -r benchmarks/requirements-dlt.txt took over 30 minutes"
    if installed.returncode != 0:
        return None, f"pip install -r benchmarks/requirements-dlt.txt failed: {_pip_problem(installed.stderr + installed.stdout)}"
    stamp.write_text(wanted)
    return python, "installed"


def dlt_url(dsn: str) -> str:
    """A postgresql:// URL for dlt. dlt insists on a password; with trust authentication any will do."""
    p = conninfo_to_dict(dsn)
    user = quote(p.get("user") or os.environ.get("PGUSER") or "postgres", safe="")
    password = quote(p.get("password") or "unused", safe="")
    host, port = p.get("host") or "127.0.0.1", p.get("port") or "5432"
    return f"postgresql://{user}:{password}@{host}:{port}/{quote(p['dbname'], safe='')}"


def run_dlt(python: Path, sp: Space, timeout: float) -> dict:
    """dlt_load.py in the dlt virtualenv, timed from start to exit, with its peak RSS."""
    workdir = tempfile.mkdtemp(prefix="dlt-run-")
    out_path, err_path = Path(workdir) / "stdout", Path(workdir) / "stderr"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    command = [str(python), str(BENCH / "dlt_load.py"), "--base", sp.base, "--domain", DOMAIN,
               "--dsn", dlt_url(sp.dsn), "--user", USER, "--key", KEY,
               "--case-page", str(CASE_PAGE), "--form-page", str(FORM_PAGE), "--workdir", str(Path(workdir) / "pipelines")]
    try:
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=err)
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - started
            timer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
        if seconds >= timeout:
            return {"error": f"dlt_load.py did not finish in {timeout:g} s"}
        if proc.returncode != 0:
            lines = [line.strip() for line in err_path.read_text(errors="replace").splitlines() if line.strip()]
            why = [line for line in lines if "Error" in line or "Exception" in line] or lines or ["no output"]
            return {"error": f"dlt_load.py exited {proc.returncode}: {why[-1][:300]}"}
        result = json.loads(out_path.read_text().strip().splitlines()[-1])
        result.update(seconds=seconds, peak_rss_mb=usage.ru_maxrss / 1024)
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- the sections ------------------------------------------------------------------------------------


def load_round(sp: Space, env: dict[str, str], dsn: str) -> dict:
    """The fetch-only client, the plain fetch-and-COPY loader and ours, one after another; ours into ``dsn``."""
    fetch = fetch_only(sp.base)
    plain = plain_copy(sp.base, sp.dsn)
    full_s, rss = materialize(env)
    load = last_run(dsn)["load"]
    cases, forms = load["cases"]["rows"], load["forms"]["rows"]
    phase_s = load["cases"]["seconds"] + load["forms"]["seconds"]
    fetch_s = cases / fetch["cases_per_s"] + forms / fetch["forms_per_s"]
    plain_s = cases / plain["cases_per_s"] + forms / plain["forms_per_s"]
    fetch_only_ = {**fetch, "seconds": fetch_s, "records_per_s": (cases + forms) / fetch_s}
    ours = {
        "seconds": full_s, "peak_rss_mb": rss, "cases": cases, "forms": forms,
        "load_phase_seconds": phase_s,
        "load_cases_per_s": cases / load["cases"]["seconds"], "load_forms_per_s": forms / load["forms"]["seconds"],
        "load_records_per_s": (cases + forms) / phase_s, "command_records_per_s": (cases + forms) / full_s,
        "vs_fetch_only": fetch_s / phase_s,
    }
    plain_ = {**plain, "seconds": plain_s, "records_per_s": (cases + forms) / plain_s, "vs_fetch_only": fetch_s / plain_s}
    return {"fetch_only": fetch_only_, "plain": plain_, "ours": ours}


def load_section(sp: Space, dlt: tuple[Path | None, str], dlt_timeout: float, rounds: int) -> dict:
    """``rounds`` rounds of the three loads: the machine's noise moves one round's ratio by as much as
    a tenth, so the round with the median ratio of ours to fetch-only is the one reported. The last
    round loads the space's own database, which the incremental and query sections go on with."""
    print(f"load: {sp.cases:,} cases + {sp.forms:,} forms, {rounds} round(s)", flush=True)
    done = []
    for i in range(rounds):
        print(f"  round {i + 1}: fetch-only client, plain fetch-and-COPY, data-explorer materialize ...", flush=True)
        if i < rounds - 1:
            with workspace(sp.server, new_tag(), sp.base) as (dsn, env):
                done.append(load_round(sp, env, dsn))
        else:
            done.append(load_round(sp, sp.env, sp.dsn))
    median = sorted(done, key=lambda r: r["ours"]["vs_fetch_only"])[(len(done) - 1) // 2]
    fetch_only_, plain_, ours = median["fetch_only"], median["plain"], median["ours"]
    cases, forms = ours["cases"], ours["forms"]
    python, how = dlt
    if python is None:
        dlt_result = {"error": how}
    else:
        print("  dlt rest_api -> postgres ...", flush=True)
        dlt_result = run_dlt(python, sp, dlt_timeout)
        if "error" not in dlt_result:
            res = dlt_result["resources"]
            got = res["cases"]["rows_in_destination"] + res["forms"]["rows_in_destination"]
            runs_s = res["cases"]["seconds"] + res["forms"]["seconds"]
            dlt_result.update(
                records=got, command_records_per_s=got / dlt_result["seconds"], runs_records_per_s=got / runs_s,
                cases_per_s=res["cases"]["rows"] / res["cases"]["seconds"],
                forms_per_s=res["forms"]["rows"] / res["forms"]["seconds"], runs_seconds=runs_s,
            )
            if got != cases + forms:
                dlt_result["warning"] = f"dlt loaded {got:,} records, ours {cases + forms:,}"
    return {"cases": sp.cases, "forms": sp.forms, "fetch_only": fetch_only_, "plain": plain_, "ours": ours, "dlt": dlt_result,
            "rounds": done, "last_full_seconds": done[-1]["ours"]["seconds"]}


def incremental_section(sp: Space, full_seconds: float) -> dict:
    changed = max(1, sp.cases // 100)
    print(f"incremental: {changed:,} cases changed", flush=True)
    httpx.post(f"{sp.base}/_sim/mutate", json={"domain": DOMAIN, "update_cases": changed}).raise_for_status()
    seconds, _ = materialize(sp.env)
    load = last_run(sp.dsn)["load"]
    return {"changed_cases": changed, "loaded_cases": load["cases"]["rows"], "loaded_forms": load["forms"]["rows"],
            "seconds": seconds, "full_seconds": full_seconds, "ratio": seconds / full_seconds}


def memory_section(sizes: list[int], forms_ratio: float, server: str) -> dict:
    rows = []
    for n in sizes:
        forms = int(n * forms_ratio)
        print(f"memory: {n:,} cases + {forms:,} forms", flush=True)
        with space(n, forms, server) as sp:
            seconds, rss = materialize(sp.env)
            load = last_run(sp.dsn)["load"]
        rows.append({"cases": n, "forms": forms, "seconds": seconds, "peak_rss_mb": rss,
                     "loaded_cases": load["cases"]["rows"], "loaded_forms": load["forms"]["rows"]})
    return {"forms_ratio": forms_ratio, "runs": rows, "ratio": rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]}


def ceiling_section(sp: Space, cpus: int) -> dict:
    """What the CPU allows: each part of a load measured alone (cpu_budget.py), for a space of the
    load's size served by a simulator of its own. In a child process: it holds every page in memory,
    and a child forked from a big parent would start its peak RSS (the memory row) at that size."""
    print(f"ceiling: CPU of the simulator, the runner and PostgreSQL, each alone, on {cpus} CPUs", flush=True)
    out = RESULTS / "cpu_budget.json"
    out.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cpu_budget.py"), "--cases", str(sp.cases),
                           "--forms", str(sp.forms), "--cpus", str(cpus), "--server", sp.server],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0 or not out.exists():
        return {"error": f"cpu_budget.py failed: {done.stderr.strip()[-300:] or 'no output'}"}
    return json.loads(out.read_text())


def query_section(sp: Space, clients: int, seconds: float) -> dict:
    print(f"query path: {clients} clients x {seconds:g} s, MCP then direct", flush=True)
    with start_gateway(sp.env) as gateway:
        mcp = asyncio.run(run_mcp(gateway.url, f"ApiKey {USER}:{KEY}", DOMAIN, clients, seconds))
        direct = asyncio.run(run_direct(gateway.direct_conninfo, gateway.schema, clients, seconds))
        gateway_rss = gateway.rss_mb()
    return {"clients": clients, "seconds": seconds, "statements": STATEMENTS, "mcp": mcp, "direct": direct,
            "gateway_rss_mb": gateway_rss, "p50_ratio": mcp["p50_ms"] / direct["p50_ms"] if direct["p50_ms"] else None}


# --- machine, table ----------------------------------------------------------------------------------


def machine(server: str) -> dict:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_mb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory_mb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1]) // 1024
    with psycopg.connect(server) as conn:
        pg = conn.execute("SELECT version()").fetchone()[0]
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_mb": memory_mb, "python": platform.python_version(),
            "postgresql": pg, "platform": platform.platform()}


def check(checks: list, name: str, value: float | None, target: str, ok: bool | None) -> str:
    result = "n/a" if ok is None else ("PASS" if ok else "MISS")
    checks.append({"name": name, "value": value, "target": target, "result": result})
    return result


def table(summary: dict) -> list[list[str]]:
    """Rows of (measure, measured, target, result); section headers have one cell."""
    rows, checks = [], summary["checks"]
    if "load" in summary:
        ld = summary["load"]
        f, p, o, d = ld["fetch_only"], ld["plain"], ld["ours"], ld["dlt"]
        rounds = f", the median of {len(ld['rounds'])} rounds" if len(ld["rounds"]) > 1 else ""
        rows.append([f"Load: {ld['cases']:,} cases + {ld['forms']:,} forms, one simulator, one PostgreSQL{rounds}"])
        rows.append(["fetch-only client (the limit)",
                     f"{f['records_per_s']:,.0f} rec/s ({f['cases_per_s']:,.0f} cases/s, {f['forms_per_s']:,.0f} forms/s), {f['seconds']:.1f} s", "", ""])
        rows.append(["plain fetch-and-COPY (yardstick: no checks, keys or checkpoints)",
                     f"{p['records_per_s']:,.0f} rec/s ({p['cases_per_s']:,.0f} cases/s, {p['forms_per_s']:,.0f} forms/s), {p['seconds']:.1f} s", "", ""])
        rows.append(["ours: data-explorer materialize",
                     f"load phase {o['load_records_per_s']:,.0f} rec/s ({o['load_cases_per_s']:,.0f} cases/s, {o['load_forms_per_s']:,.0f} forms/s); "
                     f"whole command {o['seconds']:.1f} s = {o['command_records_per_s']:,.0f} rec/s; peak RSS {o['peak_rss_mb']:.0f} MB", "", ""])
        if "error" in d:
            rows.append(["dlt rest_api -> postgres", f"not measured: {d['error']}", "", ""])
            rows.append(["ours / dlt (load phase / dlt's runs)", "-", f">= {TARGETS['ours_vs_dlt']:g}x",
                         check(checks, "ours_vs_dlt", None, f">= {TARGETS['ours_vs_dlt']:g}x", None)])
        else:
            rows.append([f"dlt {d['dlt']} rest_api -> postgres",
                         f"pipeline runs {d['runs_records_per_s']:,.0f} rec/s ({d['cases_per_s']:,.0f} cases/s, {d['forms_per_s']:,.0f} forms/s); "
                         f"whole command {d['seconds']:.1f} s = {d['command_records_per_s']:,.0f} rec/s; peak RSS {d['peak_rss_mb']:.0f} MB", "", ""])
            # the target is the loaders' throughput, as the issue words it: our load phase against dlt's
            # pipeline runs (extract, normalize, load); the whole commands are shown beside it
            ratio = o["load_records_per_s"] / d["runs_records_per_s"]
            rows.append(["ours / dlt (load phase / dlt's runs)", f"{ratio:.2f}x", f">= {TARGETS['ours_vs_dlt']:g}x",
                         check(checks, "ours_vs_dlt", ratio, f">= {TARGETS['ours_vs_dlt']:g}x", ratio >= TARGETS["ours_vs_dlt"])])
            rows.append(["ours / dlt (whole command: ours includes discover, dbt, publish)",
                         f"{o['command_records_per_s'] / d['command_records_per_s']:.2f}x", "", ""])
            rows.append(["plain fetch-and-COPY / dlt's runs", f"{p['records_per_s'] / d['runs_records_per_s']:.2f}x", "", ""])
        ratio = o["vs_fetch_only"]
        rows.append(["ours / fetch-only (load phase)",
                     f"{ratio:.2f} (cases {o['load_cases_per_s'] / f['cases_per_s']:.2f}, forms {o['load_forms_per_s'] / f['forms_per_s']:.2f})",
                     f">= {TARGETS['ours_vs_fetch']:.2f}",
                     check(checks, "ours_vs_fetch", ratio, f">= {TARGETS['ours_vs_fetch']:.2f}", ratio >= TARGETS["ours_vs_fetch"])])
        rows.append(["plain fetch-and-COPY / fetch-only",
                     f"{p['vs_fetch_only']:.2f} (cases {p['cases_per_s'] / f['cases_per_s']:.2f}, "
                     f"forms {p['forms_per_s'] / f['forms_per_s']:.2f})", "", ""])
        if "error" in summary.get("ceiling", {}):
            rows.append(["ceiling of ours / fetch-only", f"not measured: {summary['ceiling']['error']}", "", ""])
        elif "ceiling" in summary:
            c = summary["ceiling"]["kinds"]
            rows.append([f"ceiling of ours / fetch-only: each part's CPU alone, {summary['ceiling']['cpus']} CPUs all busy",
                         f"{c['both']['ceiling']:.2f} (cases {c['cases']['ceiling']:.2f}, forms {c['forms']['ceiling']:.2f}); "
                         f"ours reaches {ratio / c['both']['ceiling']:.2f} of it", "", ""])
            ms = c["forms"]["ms_per_1000"]
            rows.append(["CPU per 1,000 forms: simulator, runner, PostgreSQL",
                         f"{ms['simulator']:.1f} + {ms['runner']:.1f} + {ms['postgres']:.1f} = {sum(ms.values()):.1f} ms", "", ""])
        if len(ld["rounds"]) > 1:
            each = lambda who: ", ".join(f"{r[who]['vs_fetch_only']:.2f}" for r in ld["rounds"])  # noqa: E731
            rows.append(["rounds: ours / fetch-only; plain / fetch-only (median round above)", f"{each('ours')}; {each('plain')}", "", ""])
    if "memory" in summary:
        mem = summary["memory"]
        rows.append([f"Memory: peak RSS of materialize (wait4), forms = {mem['forms_ratio']:g} x cases"])
        for run in mem["runs"]:
            rows.append([f"{run['cases']:,} cases + {run['forms']:,} forms", f"{run['peak_rss_mb']:.0f} MB in {run['seconds']:.1f} s", "", ""])
        big = mem["runs"][-1]
        rows[-1][2] = f"<= {TARGETS['rss_big_mb']:g} MB" + ("" if big["cases"] >= 1_000_000 else " (at 1M)")
        rows[-1][3] = check(checks, "rss_big_mb", big["peak_rss_mb"], rows[-1][2], big["peak_rss_mb"] <= TARGETS["rss_big_mb"])
        rows.append([f"{big['cases']:,} / {mem['runs'][0]['cases']:,} cases", f"{mem['ratio']:.2f}x", f"<= {TARGETS['rss_growth']:g}x",
                     check(checks, "rss_growth", mem["ratio"], f"<= {TARGETS['rss_growth']:g}x", mem["ratio"] <= TARGETS["rss_growth"])])
    if "incremental" in summary:
        inc = summary["incremental"]
        rows.append([f"Incremental: {inc['changed_cases']:,} cases (1%) changed, then materialize"])
        rows.append(["incremental / full run", f"{inc['seconds']:.1f} s / {inc['full_seconds']:.1f} s = {inc['ratio']:.2f} "
                     f"({inc['loaded_cases']:,} cases, {inc['loaded_forms']:,} forms loaded)", f"<= {TARGETS['incremental_vs_full']:.2f}",
                     check(checks, "incremental_vs_full", inc["ratio"], f"<= {TARGETS['incremental_vs_full']:.2f}",
                           inc["ratio"] <= TARGETS["incremental_vs_full"])])
    if "query" in summary:
        q = summary["query"]
        rows.append([f"Query path: {q['clients']} concurrent clients, {q['seconds']:g} s each, {len(q['statements'])} statements in turn"])
        for label, r in (("MCP query tool, streamable HTTP", q["mcp"]), ("psycopg direct, reader's privileges", q["direct"])):
            rows.append([label, f"{r['requests']:,} requests ({r['requests'] / r['seconds']:,.0f}/s), {r['errors']} errors, "
                         f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms", "", ""])
        errors = q["mcp"]["errors"] + q["direct"]["errors"]
        rows.append(["errors (both)", str(errors), "0", check(checks, "query_errors", errors, "0", errors == 0)])
        ratio = q["p50_ratio"]
        rows.append(["p50 MCP / direct", "-" if ratio is None else f"{ratio:.2f}x", f"<= {TARGETS['query_p50_vs_direct']:g}x",
                     check(checks, "query_p50_vs_direct", ratio, f"<= {TARGETS['query_p50_vs_direct']:g}x",
                           None if ratio is None else ratio <= TARGETS["query_p50_vs_direct"])])
    return rows


def render(rows: list[list[str]]) -> str:
    full = [r for r in rows if len(r) == 4]
    widths = [max(len(r[i]) for r in full + [["measure", "measured", "target", "result"]]) for i in range(4)]
    line = "-+-".join("-" * w for w in widths)
    out = [" | ".join(h.ljust(w) for h, w in zip(("measure", "measured", "target", "result"), widths)), line]
    for r in rows:
        out.append(f"== {r[0]}" if len(r) == 1 else " | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(out)


# --- main --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and 5 s of queries (a few minutes)")
    parser.add_argument("--server", default=os.environ.get("DATABASE_URL", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"),
                        help="PostgreSQL to work in (fresh databases are created and dropped there)")
    parser.add_argument("--cases", type=int, help="cases of the load space (default 100,000; --quick 20,000)")
    parser.add_argument("--forms", type=int, help="forms of the load space (default: as many as cases)")
    parser.add_argument("--memory-sizes", help="two case counts, small,big (default 100000,1000000; --quick 20000,100000)")
    parser.add_argument("--memory-forms-ratio", type=float, default=0.05, help="forms per case in the memory runs (default 0.05)")
    parser.add_argument("--rounds", type=int, help="rounds of the load comparison; the median round is reported (default 5; --quick 1)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients on the query path (default 20)")
    parser.add_argument("--query-seconds", type=float, help="seconds per query side (default 30; --quick 5)")
    parser.add_argument("--dlt-timeout", type=float, default=3600, help="seconds dlt may take (default 3600)")
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out: dlt, ceiling, memory, incremental, query")
    args = parser.parse_args()
    quick = args.quick
    cases = args.cases or (20_000 if quick else 100_000)
    forms = args.forms if args.forms is not None else cases
    memory_sizes = [int(s) for s in (args.memory_sizes or ("20000,100000" if quick else "100000,1000000")).split(",")]
    query_seconds = args.query_seconds or (5.0 if quick else 30.0)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    rounds = args.rounds or (1 if quick else 5)
    if rounds < 1:
        parser.error("--rounds must be at least 1")

    started = time.perf_counter()
    summary: dict = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "mode": "quick" if quick else "full",
                     "arguments": vars(args), "machine": machine(args.server), "targets": TARGETS, "checks": []}
    dlt = (None, "left out (--skip dlt)") if "dlt" in skip else dlt_python()
    with space(cases, forms, args.server) as sp:
        summary["load"] = load_section(sp, dlt, args.dlt_timeout, rounds)
        if "ceiling" not in skip:
            summary["ceiling"] = ceiling_section(sp, summary["machine"]["cpus"] or 2)
        if "incremental" not in skip:
            summary["incremental"] = incremental_section(sp, summary["load"]["last_full_seconds"])
        if "query" not in skip:
            summary["query"] = query_section(sp, args.clients, query_seconds)
    if "memory" not in skip:
        summary["memory"] = memory_section(memory_sizes, args.memory_forms_ratio, args.server)
    rows = table(summary)
    summary["seconds"] = time.perf_counter() - started
    m = summary["machine"]
    print()
    print(f"{summary['mode']} run, {m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}, "
          f"{m['postgresql'].split(' on ')[0]}; {summary['seconds']:.0f} s in all")
    print(render(rows))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {(RESULTS / 'summary.json').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
