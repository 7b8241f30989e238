"""Where the runner's own CPU goes while loading, without the simulator or PostgreSQL beside it.

    python benchmarks/runner_cpu.py [--cases 100000] [--forms 100000]

Downloads every page of a simulator space once (loader.download: the fetch-only
client's paging), stops the simulator, then replays the pages through the loader's own steps in
one thread, as the runner does them with the cyclic collector off: parse,
check and convert (records to rows, case blocks found), stage (repeats
collapsed), COPY formatting (psycopg's binary formatter with the types copy_rows
sets, nothing sent) and freeing
the parsed page. Prints CPU seconds per step and kind; writes
benchmarks/results/runner_cpu.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
from collections import defaultdict
from pathlib import Path

import psycopg
from loader import download
from psycopg._copy_base import BinaryFormatter
from psycopg.adapt import Transformer
from psycopg.pq import Format

from data_explorer.loaders import json_codec
from data_explorer.loaders.commcare import cases, forms
from data_explorer.pipelines.registry import Registry
from data_explorer.warehouse.batches import JsonText, copy_types, stage_rows

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = Registry.from_directory(ROOT / "pipelines").get("commcare_sync")


def convert(kind: str, records: list) -> dict[str, list]:
    """The rows the loader makes of one page (the cursor's bookkeeping left out)."""
    if kind == "cases":
        return {"cases": [cases.case_row(r) for r in records]}
    blocks: list = []
    rows = []
    for record in records:
        rows.append(forms.form_row(record))
        blocks.extend(forms.block_rows(forms.form_id_of(record), record["form"]))
    return {"forms": rows, "form_case_blocks": blocks}


COLUMNS = {"cases": cases.CASE_COLUMNS, "forms": forms.FORM_COLUMNS, "form_case_blocks": forms.BLOCK_COLUMNS}
TABLES = {t.name: t for t in PIPELINE.raw_tables}


def formatters(conn: psycopg.Connection) -> dict[str, BinaryFormatter]:
    """A binary COPY formatter for each raw table, set up as copy_rows sets up its COPY."""
    conn.adapters.register_dumper(None, JsonText)
    out = {}
    for name, names in COLUMNS.items():
        transformer = Transformer(conn)
        types = [conn.adapters.types.get_oid(t) for t in copy_types(TABLES[name], names)]
        transformer.set_dumper_types(types, Format.BINARY)
        out[name] = BinaryFormatter(transformer)
    return out


def replay(bodies: list[tuple[str, bytes]], formatter: dict[str, BinaryFormatter]) -> dict[str, dict[str, float]]:
    spent: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def clock() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    for kind, body in bodies:
        steps = spent[kind]
        t = clock()
        records = json_codec.loads(body)["cases" if kind == "cases" else "objects"]
        steps["parse"] += (u := clock()) - t
        rows = convert(kind, records)
        steps["check and convert"] += (t := clock()) - u
        staged = {name: stage_rows(TABLES[name], COLUMNS[name], table_rows, 1) for name, table_rows in rows.items()}
        steps["stage"] += (u := clock()) - t
        for name, one in staged.items():
            for row in one.rows:
                formatter[name].write_row(row)
            formatter[name].end()
        steps["COPY formatting"] += (t := clock()) - u
        del records, rows, staged
        steps["free the page"] += clock() - t
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--forms", type=int, default=100_000)
    parser.add_argument("--server", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                        help="PostgreSQL whose types psycopg formats for (nothing is written)")
    args = parser.parse_args()
    by_kind, _, _ = download(args.cases, args.forms)
    bodies = [(kind, body) for kind, kept in by_kind.items() for body in kept]  # cases, then forms
    with psycopg.connect(args.server) as conn:
        formatter = formatters(conn)
        gc.disable()
        spent = replay(bodies, formatter)
        gc.enable()
    steps = list(next(iter(spent.values())))
    print(" | ".join(["kind", *steps, "total"]))
    for kind, by_step in spent.items():
        print(" | ".join([kind, *(f"{by_step[s]:.2f} s" for s in steps), f"{sum(by_step.values()):.2f} s"]))
    total = sum(sum(v.values()) for v in spent.values())
    print(f"all: {total:.2f} s of CPU for {args.cases:,} cases and {args.forms:,} forms")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "runner_cpu.json").write_text(json.dumps({"cases": args.cases, "forms": args.forms, "cpu_seconds": spent}, indent=2))


if __name__ == "__main__":
    main()
