"""dlt's `rest_api` source loading a simulator project space into dlt's postgres destination.

Runs in its own virtualenv (`benchmarks/.dlt-venv`, from `benchmarks/requirements-dlt.txt`),
started by `benchmarks/run.py`, which times the whole process:

    python benchmarks/dlt_load.py --base URL --domain bench --dsn postgresql://... [--dataset dlt_bench]

Loads the same records as `data-explorer materialize` fetches, with the same page sizes:

- cases: Case API v2, cursor paging (follow the absolute `next` URL);
- forms: Form API v0.5, offset paging (follow the relative `meta.next` URL), archived included.

Each resource is one `pipeline.run` (extract, normalize, load) so that its rate can be
told apart; dlt's defaults otherwise (nested objects flattened into columns, lists into
child tables, `insert_values` files). The write disposition is `replace`: a fresh full
load without deduplication, dlt's cheapest path for a first load. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # no telemetry from a benchmark

import dlt  # noqa: E402
from dlt.sources.helpers.rest_client.paginators import JSONLinkPaginator  # noqa: E402
from dlt.sources.rest_api import rest_api_source  # noqa: E402


def source(base: str, domain: str, user: str, key: str, case_page: int, form_page: int):
    return rest_api_source({
        "client": {
            "base_url": f"{base}/a/{domain}/api/",
            "headers": {"Authorization": f"ApiKey {user}:{key}"},
        },
        "resource_defaults": {"write_disposition": "replace"},
        "resources": [
            {
                "name": "cases",
                "primary_key": "case_id",
                "endpoint": {
                    "path": "case/v2/",
                    "params": {"limit": case_page},
                    "data_selector": "cases",
                    "paginator": JSONLinkPaginator(next_url_path="next"),
                },
            },
            {
                "name": "forms",
                "primary_key": "id",
                "endpoint": {
                    "path": "v0.5/form/",
                    "params": {"limit": form_page, "offset": 0, "order_by": "indexed_on", "include_archived": "true"},
                    "data_selector": "objects",
                    "paginator": JSONLinkPaginator(next_url_path="meta.next"),
                },
            },
        ],
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="CommCare (simulator) base URL")
    parser.add_argument("--domain", default="bench")
    parser.add_argument("--dsn", required=True, help="postgresql:// URL of the destination database")
    parser.add_argument("--dataset", default="dlt_bench", help="destination schema")
    parser.add_argument("--user", default="demo@example.org")
    parser.add_argument("--key", default="demo-api-key")
    parser.add_argument("--case-page", type=int, default=5000)
    parser.add_argument("--form-page", type=int, default=1000)
    parser.add_argument("--workdir", help="dlt's pipelines directory (default: a new temporary directory)")
    args = parser.parse_args()

    workdir = args.workdir or tempfile.mkdtemp(prefix="dlt-bench-")
    pipeline = dlt.pipeline(
        pipeline_name="commcare_bench", pipelines_dir=workdir,
        destination=dlt.destinations.postgres(credentials=args.dsn), dataset_name=args.dataset,
    )
    out: dict = {"dlt": dlt.__version__, "resources": {}}
    src = source(args.base, args.domain, args.user, args.key, args.case_page, args.form_page)
    for name in ("cases", "forms"):
        started = time.perf_counter()
        pipeline.run(src.with_resources(name))
        seconds = time.perf_counter() - started
        trace = pipeline.last_trace
        steps = {step.step: (step.finished_at - step.started_at).total_seconds() for step in trace.steps}
        counts = trace.last_normalize_info.row_counts
        out["resources"][name] = {
            "rows": counts.get(name, 0),
            "child_rows": sum(v for k, v in counts.items() if k.startswith(f"{name}__")),
            "child_tables": sorted(k for k in counts if k.startswith(f"{name}__")),
            "seconds": seconds,
            "steps": steps,
        }
    with pipeline.sql_client() as client:
        for name in ("cases", "forms"):
            rows = client.execute_sql(f"SELECT count(*) FROM {client.make_qualified_table_name(name)}")
            out["resources"][name]["rows_in_destination"] = rows[0][0]
            columns = client.execute_sql(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                args.dataset, name,
            )
            out["resources"][name]["columns"] = columns[0][0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
