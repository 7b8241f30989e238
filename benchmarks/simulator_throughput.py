"""How fast the CommCare simulator serves records to a client that only downloads pages.

    python benchmarks/simulator_throughput.py [--cases 200000] [--forms 50000] [--repeat 1]

The simulator runs in a child process (as in real use, so client and server do
not share one interpreter lock); the client pages through the Case API v2 with
limit=5000 and through the Form API with limit=1000, reading every byte and
discarding it (and, separately, also parsing the JSON, to show what a loader
would see). Prints a table and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
from simulator_process import start_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
AUTH = {"Authorization": "ApiKey demo@example.org:demo-api-key"}

def pull_cases(client: httpx.Client, base: str, parse: bool) -> tuple[int, int, int]:
    url, params = f"{base}/a/bench/api/case/v2/", {"limit": 5000}
    records = pages = size = 0
    while url:
        response = client.get(url, params=params)
        response.raise_for_status()
        body = response.content
        pages, size = pages + 1, size + len(body)
        if parse:
            data = json.loads(body)
            records += len(data["cases"])
            url, params = data.get("next"), None
        else:  # find the count and the link without parsing the records
            head, tail = body[:40], body[-2000:]
            records += int(head.split(b":", 1)[1].split(b",", 1)[0]) if pages == 1 else 0
            marker = tail.rfind(b'"next": "')
            url, params = (tail[marker + 9: tail.rfind(b'"')].decode(), None) if marker >= 0 else (None, None)
    return records, pages, size


def pull_forms(client: httpx.Client, base: str, parse: bool) -> tuple[int, int, int]:
    """Page by date as the loader does: order_by=indexed_on, then indexed_on_start=<last instant>.

    The download-only client finds the last instant without parsing (it is the last ``"indexed_on"``
    of the body: keys are sorted, ``form`` comes before it in each object).
    """
    path = "/a/bench/api/v0.5/form/"
    start, offset, seen = None, 0, set()
    records = pages = size = 0
    while True:
        params = {"limit": 1000, "order_by": "indexed_on", "offset": offset, "include_archived": "true"}
        if start is not None:
            params["indexed_on_start"] = start
        response = client.get(f"{base}{path}", params=params)
        response.raise_for_status()
        body = response.content
        pages, size = pages + 1, size + len(body)
        if parse:
            objects = json.loads(body)["objects"]
            ids, count = [o["id"] for o in objects], len(objects)
            instants = [o["indexed_on"] for o in objects]
            first, last = (instants[0], instants[-1]) if instants else (None, None)
        else:
            count = body.count(b'"resource_uri": ')
            marker = body.rfind(b'"indexed_on": "')
            last = body[marker + 15: marker + 42].decode() if count else None
            marker = body.find(b'"indexed_on": "')
            first = body[marker + 15: marker + 42].decode() if count else None
            ids = [body[i + 7: i + 43] for i in _find_all(body, b', "id": "')]
        records += sum(1 for i in ids if i not in seen)
        seen = set(ids)
        if count < 1000:
            return records, pages, size
        last_filter = last.rstrip("Z")
        if start is not None and first == last and last_filter == start:
            offset += count
        else:
            start, offset = last_filter, 0


def _find_all(body: bytes, needle: bytes):
    at = body.find(needle)
    while at >= 0:
        yield at
        at = body.find(needle, at + 1)


def measure(name: str, pull, base: str, parse: bool, repeat: int) -> dict:
    best = None
    for _ in range(repeat):
        with httpx.Client(headers=AUTH, timeout=120) as client:
            started = time.perf_counter()
            records, pages, size = pull(client, base, parse)
            elapsed = time.perf_counter() - started
        run = {"records": records, "pages": pages, "bytes": size, "seconds": round(elapsed, 3),
               "records_per_s": round(records / elapsed), "mb_per_s": round(size / elapsed / 1e6, 1)}
        if best is None or run["records_per_s"] > best["records_per_s"]:
            best = run
    return {"what": name, "client": "parse JSON" if parse else "download only", **best}


def _peak_rss_mb(pid: int) -> float | None:
    """The server's peak resident memory, where /proc tells it (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200_000)
    parser.add_argument("--forms", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the best is kept")
    args = parser.parse_args(argv)
    process, base = start_server(args.cases, args.forms)
    try:
        rows = [
            measure("cases (limit 5000)", pull_cases, base, False, args.repeat),
            measure("cases (limit 5000)", pull_cases, base, True, args.repeat),
            measure("forms (limit 1000)", pull_forms, base, False, args.repeat),
            measure("forms (limit 1000)", pull_forms, base, True, args.repeat),
        ]
        peak_rss = _peak_rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)
    header = f"{'endpoint':<20} {'client':<14} {'records':>9} {'pages':>6} {'MB':>8} {'s':>7} {'records/s':>10} {'MB/s':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['what']:<20} {r['client']:<14} {r['records']:>9} {r['pages']:>6} {r['bytes'] / 1e6:>8.1f} "
              f"{r['seconds']:>7.2f} {r['records_per_s']:>10} {r['mb_per_s']:>6}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"simulator_throughput-{stamp}.json"
    out.write_text(json.dumps({
        "benchmark": "simulator_throughput", "at": stamp, "cases": args.cases, "forms": args.forms,
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "simulator_peak_rss_mb": peak_rss, "results": rows,
    }, indent=2) + "\n")
    if peak_rss is not None:
        print(f"\nsimulator peak memory (RSS): {peak_rss:.0f} MB")
    print(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
