"""What the reconcile step costs: requests and seconds per source to find deleted cases and forms.

    python benchmarks/reconcile.py [--cases 100000] [--forms 100000] [--deleted 0,10,100] [--server DSN]

A simulator serves a project space of that many cases and forms in a child process; after a full
`data-explorer materialize`, each round deletes that many cases and as many forms in the simulator (on
top of the rounds before) and runs `data-explorer materialize --reconcile`; the run's status gives each
source's requests, records removed and seconds. Prints a table and writes JSON to
benchmarks/results/reconcile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import httpx
from loader import RESULTS, last_run, new_tag, workspace
from simulator_process import start_server


def materialize(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "data_explorer.cli", "materialize", "--domain", "bench", *args],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise SystemExit(f"materialize failed: {done.stderr.decode()[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--forms", type=int, default=100_000)
    parser.add_argument("--deleted", default="0,10,100", help="records of each source deleted before each round")
    parser.add_argument("--server", default=os.environ.get("DATABASE_URL", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"))
    args = parser.parse_args()
    rounds = [int(n) for n in args.deleted.split(",")]
    sim, base = start_server(args.cases, args.forms)
    rows = []
    try:
        with workspace(args.server, new_tag(), base) as (dsn, env):
            full = materialize(env)
            print(f"full run of {args.cases:,} cases and {args.forms:,} forms: {full:.1f}s", flush=True)
            for deleted in rounds:
                if deleted:
                    httpx.post(f"{base}/_sim/mutate", json={"domain": "bench", "delete_cases": deleted,
                                                             "delete_forms": deleted}).raise_for_status()
                seconds = materialize(env, "--reconcile")
                load = last_run(dsn)["load"]
                for source in ("cases", "forms"):
                    found = load[source]["reconcile"]
                    rows.append({"deleted": deleted, "source": source, **found, "run_seconds": seconds})
    finally:
        sim.kill()
        sim.wait()
    header = f"{'deleted':>8}  {'source':<6}  {'requests':>8}  {'removed':>7}  {'seconds':>8}  {'whole run s':>11}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['deleted']:>8,}  {r['source']:<6}  {r['requests']:>8,}  {r['removed']:>7,}  {r['seconds']:>8.2f}  {r['run_seconds']:>11.1f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reconcile.json").write_text(json.dumps({"cases": args.cases, "forms": args.forms, "full_seconds": full,
                                                        "rounds": rows}, indent=2))


if __name__ == "__main__":
    main()
