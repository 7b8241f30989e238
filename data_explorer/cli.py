"""``data-explorer``: the command line. A thin dispatcher; the work lives in the packages."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from data_explorer.config import SettingsError, load_settings, settings_help

EXIT_FAILED = 1
EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"data-explorer: {message}", file=sys.stderr)
    return code


def cmd_materialize(args: argparse.Namespace) -> int:
    from data_explorer.pipelines.console import ConsoleReporter, summary_table
    from data_explorer.pipelines.runner import RunRequest, materialize
    from data_explorer.warehouse.database import open_database
    from data_explorer.warehouse.naming import validate_domain

    settings = load_settings()
    settings.require_commcare()
    validate_domain(args.domain)
    with open_database(settings) as db:
        status = materialize(
            settings, db, RunRequest(args.domain, args.pipeline, args.full, reconcile=args.reconcile), extra_reporters=(ConsoleReporter(),)
        )
    print(summary_table(status))
    if status.phase != "Succeeded":
        return _fail(f"{status.phase.lower()}: {status.error['code']}: {status.error['message']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import anyio

    from data_explorer.mcp_gateway.server import serve_http, serve_stdio
    from data_explorer.warehouse.database import open_database

    settings = load_settings()
    # callers are verified against CommCare; over HTTP they bring their own credential
    settings.require_commcare(credential=args.transport == "stdio")
    with open_database(settings) as db:
        if args.transport == "stdio":
            anyio.run(serve_stdio, settings, db)
        else:
            print(f"MCP gateway (streamable HTTP) on http://{args.host}:{args.port}/mcp", file=sys.stderr, flush=True)
            anyio.run(serve_http, settings, db, args.host, args.port)
    return 0


def cmd_runner(args: argparse.Namespace) -> int:
    from data_explorer.pipelines.worker import run_worker

    return run_worker(args.run_id, args.kubernetes_run)


def cmd_operator(args: argparse.Namespace) -> int:
    from data_explorer.operator.main import run_operator

    return run_operator(load_settings(), liveness=args.liveness)


def cmd_egress_proxy(args: argparse.Namespace) -> int:
    from data_explorer.egress_proxy import run_from_args

    return run_from_args(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from data_explorer.demo import run_demo

    return run_demo(args)


def cmd_simulator(args: argparse.Namespace) -> int:
    from data_explorer.simulator.cli import run_from_args

    return run_from_args(args) or 0


def _at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="data-explorer",
        description="Explore a CommCare project space's data in PostgreSQL, safely, from AI agents.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens in detail")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run the embedded demo end to end: simulator, PostgreSQL, discover, load, transform, MCP gateway",
        description="Start a CommCare simulator and PostgreSQL (embedded unless DATABASE_URL is set), "
        "materialize the demo project space, show what an agent can query, then serve the MCP gateway over HTTP.",
    )
    demo.add_argument("--cases", type=_at_least(8), default=2000, help="cases in the demo project space (default 2000)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the synthetic data (default 7)")
    demo.add_argument("--port", type=_at_least(1), default=8000, help="port of the MCP gateway it ends in (default 8000)")
    demo.add_argument("--no-serve", action="store_true", help="stop after the queries instead of serving MCP")
    demo.set_defaults(func=cmd_demo)

    materialize = commands.add_parser(
        "materialize",
        help="discover, load and transform one project space into PostgreSQL",
        description="Materialize a CommCare project space: discover its apps, load cases, forms and users "
        "(incrementally after the first run), build the tables with dbt (or apply small changes to the "
        "published tables in place), and publish them atomically.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    materialize.add_argument("--domain", required=True, help="the CommCare project space (domain)")
    materialize.add_argument(
        "--full", action="store_true",
        help="reload everything and rebuild every table with dbt, instead of loading and applying only what changed",
    )
    materialize.add_argument(
        "--reconcile", action="store_true",
        help="look for cases and forms deleted in CommCare and remove them now, instead of at most once per "
        "DATA_EXPLORER_RECONCILE_HOURS (a --full run removes them anyway)",
    )
    materialize.add_argument("--pipeline", default="commcare_sync", help="pipeline to run (default commcare_sync)")
    materialize.set_defaults(func=cmd_materialize)

    serve = commands.add_parser(
        "serve",
        help="serve the MCP gateway over stdio or streamable HTTP",
        description="Serve the MCP tools (list_tenants, run_materialization, list_tables, query, ...) to AI agents. "
        "Over HTTP every request needs 'Authorization: Bearer <CommCare OAuth token>' or "
        "'Authorization: ApiKey user:key', verified against COMMCARE_BASE_URL; over stdio the caller is the "
        "CommCare user of COMMCARE_USERNAME/COMMCARE_API_KEY (or COMMCARE_OAUTH_TOKEN).",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--transport", choices=("stdio", "http"), default="stdio", help="stdio (default) or http")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on with http (default 127.0.0.1)")
    serve.add_argument("--port", type=_at_least(1), default=8000, help="port to listen on with http (default 8000)")
    serve.set_defaults(func=cmd_serve)

    runner = commands.add_parser(
        "runner",
        help="(internal) run one materialization that the gateway created",
        description="Run the materialization with this id, created Pending by the gateway's control plane. "
        "Reports progress to the run's row; exits 0 when it succeeded.",
    )
    runner.add_argument("--run-id", required=True, help="the run to carry out")
    runner.add_argument("--kubernetes-run", metavar="NAMESPACE/NAME",
                        help="also patch this MaterializationRun's status (in a runner Job)")
    runner.set_defaults(func=cmd_runner)

    operator = commands.add_parser(
        "operator",
        help="run the Kubernetes operator (TenantSchema and MaterializationRun)",
        description="Reconcile TenantSchema (provision schema and roles) and MaterializationRun (one Job per run) "
        "resources in DATA_EXPLORER_NAMESPACE (default: the pod's namespace). Needs DATABASE_URL, "
        "DATA_EXPLORER_SECRET_KEY and DATA_EXPLORER_RUNNER_IMAGE; see docs/kubernetes.md.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    operator.add_argument("--liveness", metavar="URL", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz")
    operator.set_defaults(func=cmd_operator)

    proxy = commands.add_parser(
        "egress-proxy",
        help="run the egress proxy runner pods reach the CommCare API through",
        description="A forward proxy (CONNECT and plain HTTP) that lets through only the hosts on its allow-list: "
        "runner pods reach the CommCare API through it, and nothing else (docs/kubernetes.md says why).",
    )
    from data_explorer.egress_proxy import add_arguments as add_proxy_arguments

    add_proxy_arguments(proxy)
    proxy.set_defaults(func=cmd_egress_proxy)

    simulator = commands.add_parser(
        "simulator",
        help="serve a synthetic CommCare HQ API for demos and tests",
        description="Serve the CommCare HQ APIs (cases, forms, users, apps, OAuth) over HTTP for "
        "deterministic synthetic project spaces, with optional fault injection.",
    )
    from data_explorer.simulator.cli import add_arguments

    add_arguments(simulator)
    simulator.set_defaults(func=cmd_simulator)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Everything the product writes (the data directory, the embedded server, run logs, dbt's work files)
    # is the user's alone: directories 0700, files 0600.
    os.umask(0o077)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:
        return _report(exc)


def _report(exc: Exception) -> int:
    """One line for the user; the traceback with --verbose. Imports only what a command could have raised."""
    import psycopg

    from data_explorer.loaders.errors import LoaderError
    from data_explorer.pipelines.registry import PipelineError
    from data_explorer.pipelines.runner import RunConflict, first_line
    from data_explorer.warehouse.database import DatabaseUnavailable
    from data_explorer.warehouse.embedded import EmbeddedPostgresError
    from data_explorer.warehouse.naming import InvalidDomain
    from data_explorer.warehouse.provisioning import TenantNameConflict

    auth = sys.modules.get("data_explorer.mcp_gateway.auth")  # loaded (with the MCP SDK) only by commands that serve
    failures = (DatabaseUnavailable, EmbeddedPostgresError, RunConflict, LoaderError, TenantNameConflict)
    if isinstance(exc, (SettingsError, PipelineError, InvalidDomain)):
        return _fail(str(exc), EXIT_USAGE)
    if isinstance(exc, failures + ((auth.AuthUnavailable,) if auth else ())):
        return _fail(str(exc))
    if isinstance(exc, psycopg.Error):
        return _fail(f"PostgreSQL refused: {first_line(exc)}")
    logging.getLogger(__name__).debug("unexpected error", exc_info=True)
    return _fail(f"internal error: {type(exc).__name__}: {first_line(exc)} (run with --verbose for details)")


if __name__ == "__main__":
    sys.exit(main())
