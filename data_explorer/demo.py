"""``data-explorer demo``: the whole data path on one machine, with nothing to configure.

A CommCare simulator serves a synthetic project space; PostgreSQL is the
embedded server in the data directory (or DATABASE_URL); the project space is
materialized, then changed and materialized again incrementally; finally a few
queries run as the tenant's read-only role, as an agent's would.
"""

from __future__ import annotations

import argparse

from psycopg import sql

from data_explorer.config import load_settings
from data_explorer.pipelines.console import ConsoleReporter, format_table, summary_table
from data_explorer.pipelines.runner import RunRequest, materialize
from data_explorer.simulator import DEMO_API_KEY, DEMO_USER, RunningSimulator, demo_config
from data_explorer.warehouse.database import Database, open_database
from data_explorer.warehouse.naming import TenantNames

DOMAIN = "demo"


def _as_reader(db: Database, names: TenantNames, query: sql.Composable) -> tuple[list[str], list[tuple]]:
    with db.connect() as conn:
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(names.reader_role)))
        cur = conn.execute(query)
        return [c.name for c in cur.description], cur.fetchall()


def _show(db: Database, names: TenantNames, title: str, query: sql.Composable) -> None:
    headers, rows = _as_reader(db, names, query)
    print(f"\n{title}")
    print(format_table(tuple(headers), rows))


def run_demo(args: argparse.Namespace) -> int:
    settings = load_settings()
    print(f"Data Explorer demo: a synthetic CommCare project space of {args.cases:,} cases.")
    print(f"Data directory: {settings.home}")
    with RunningSimulator(demo_config(cases=args.cases, seed=args.seed)) as sim:
        settings = settings.with_overrides(
            COMMCARE_BASE_URL=sim.base_url, COMMCARE_USERNAME=DEMO_USER, COMMCARE_API_KEY=DEMO_API_KEY
        )
        print(f"CommCare simulator: {sim.base_url}")
        with open_database(settings) as db:
            print("PostgreSQL: " + ("embedded, in the data directory" if db.embedded else "DATABASE_URL"))
            print("\n1. First run: discover the apps, load everything, build the tables.")
            # --full: the simulator starts afresh each demo, so checkpoints of an earlier demo do not apply
            status = materialize(settings, db, RunRequest(DOMAIN, full=True), extra_reporters=(ConsoleReporter(),))
            print(summary_table(status))
            if status.phase != "Succeeded":
                print(f"\nThe run failed: {status.error['code']}: {status.error['message']}")
                return 1
            changed = sim.mutate(DOMAIN, update_cases=10)
            print(f"\n2. Ten cases change in CommCare ({len(changed['updated_case_ids'])} updated); run again: only they are loaded.")
            status = materialize(settings, db, RunRequest(DOMAIN), extra_reporters=(ConsoleReporter(),))
            print(summary_table(status))
            if status.phase != "Succeeded":
                print(f"\nThe run failed: {status.error['code']}: {status.error['message']}")
                return 1
            names = TenantNames.for_domain(DOMAIN, settings.role_prefix, settings.control_schema)
            schema = sql.Identifier(names.schema)
            print(f"\n3. What an agent can query, read-only, in schema {names.schema!r}:")
            _show(db, names, "case_types", sql.SQL(
                "SELECT case_type, view_name, property_count, cases_total, cases_open FROM {}.case_types ORDER BY 1"
            ).format(schema))
            _show(db, names, "form_submissions", sql.SQL(
                "SELECT form_name, app_name, question_count, submissions, submitters FROM {}.form_submissions ORDER BY submissions DESC LIMIT 5"
            ).format(schema))
            _show(db, names, "cases opened per month", sql.SQL(
                "SELECT to_char(date_trunc('month', date_opened), 'YYYY-MM') AS month, count(*) AS cases,"
                " count(*) FILTER (WHERE closed) AS closed FROM {}.cases GROUP BY 1 ORDER BY 1 LIMIT 6"
            ).format(schema))
            if args.no_serve:
                print("\nDone. The data stays in the data directory.")
                return 0
            _serve(settings, db, args.port)
    return 0


def _serve(settings, db: Database, port: int) -> None:
    import anyio

    from data_explorer.mcp_gateway.server import serve_http

    url = f"http://127.0.0.1:{port}/mcp"
    print(
        f"\n4. The MCP gateway serves this data to agents at {url} (Ctrl-C stops it).\n"
        f"   Every request needs a CommCare credential; for the demo user:\n"
        f"     Authorization: Bearer ApiKey {DEMO_USER}:{DEMO_API_KEY}\n"
        f"   MCP Inspector: npx @modelcontextprotocol/inspector, transport 'Streamable HTTP', URL {url},\n"
        f"   and the header above. Desktop clients: see README.md, 'Connect an MCP client'.",
        flush=True,
    )
    try:
        anyio.run(serve_http, settings, db, "127.0.0.1", port)
    except KeyboardInterrupt:
        print("\nstopped")
