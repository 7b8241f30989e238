"""``data-explorer simulator``: options and start-up. The CLI module only dispatches here."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from data_explorer.simulator.config import (
    FAULT_KINDS, FAULT_SCOPES, FaultConfig, FaultRule, Quota, SimulatorConfig, WireBehaviour, demo_config,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8765, help="port to listen on (default 8765)")
    parser.add_argument("--cases", type=_count, default=2000, help="cases in the first project space (default 2000)")
    parser.add_argument("--forms", type=_count, default=None, help="forms in the first project space (default: as many as cases)")
    parser.add_argument("--users", type=_positive, default=10, help="mobile workers per project space (default 10)")
    parser.add_argument(
        "--domain", action="append", dest="domains", metavar="DOMAIN",
        help="a project space to serve (repeatable; default: demo and demo-other). "
        "demo@example.org (API key demo-api-key) belongs to the first, other@example.org (other-api-key) to the rest",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic data (default 7)")
    parser.add_argument(
        "--fault-rate", action="append", default=[], type=_fault_rule, metavar="[SCOPE:]KIND=RATE",
        help=f"inject a fault in a share of the requests (repeatable). KIND: {', '.join(FAULT_KINDS)}; "
        f"SCOPE: {', '.join(FAULT_SCOPES)} (default all)",
    )
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the fault draws (default 0)")
    parser.add_argument("--slow-delay", type=float, default=1.0, help="seconds a 'slow' fault waits (default 1)")
    parser.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds of 'rate_limit' (default 1)")
    parser.add_argument("--token-ttl", type=float, default=900.0, help="OAuth access token lifetime in seconds (default 900)")
    parser.add_argument("--no-control", action="store_true", help="do not serve the /_sim/ control API")
    ways = parser.add_argument_group("CommCare's ways of serving records (each off by default; see the simulator README)")
    ways.add_argument("--millisecond-order", action="store_true",
                      help="order indexed_on at millisecond precision, print it with microseconds")
    ways.add_argument("--mixed-timestamps", action="store_true", help="print timestamps in several spellings")
    ways.add_argument("--strict-form-dates", action="store_true",
                      help="the Form API's date parameters in CommCare's exact formats only")
    ways.add_argument("--quota-domain", type=_positive, default=None, metavar="N",
                      help="requests a project space serves per minute; then 429")
    ways.add_argument("--quota-user", type=_positive, default=None, metavar="N",
                      help="requests an API user makes per minute; then 429")
    ways.add_argument("--public-base-url", default=None, metavar="URL",
                      help="base of absolute next links, e.g. http://localhost:{port} ({port}: the port the client used)")


def build_config(args: argparse.Namespace) -> SimulatorConfig:
    faults = FaultConfig(tuple(args.fault_rate), args.fault_seed, args.slow_delay, args.retry_after)
    config = demo_config(
        cases=args.cases, forms=args.forms, users=args.users, domains=tuple(args.domains or ("demo", "demo-other")),
        seed=args.seed, token_ttl=args.token_ttl, faults=faults,
    )
    if args.no_control:
        config = replace(config, control_api=False)
    behaviour = WireBehaviour(
        millisecond_order=args.millisecond_order, mixed_timestamps=args.mixed_timestamps,
        strict_form_dates=args.strict_form_dates, quota=Quota(args.quota_domain, args.quota_user),
        public_base_url=args.public_base_url,
    )
    return config.with_behaviour(behaviour)


def run_from_args(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except ValueError as exc:
        print(f"data-explorer simulator: {exc}", file=sys.stderr)
        return 2
    base = f"http://{args.host}:{args.port}"
    print(f"CommCare HQ simulator on {base}")
    for domain in config.domains:
        print(f"  project space {domain.name}: {domain.cases} cases, {domain.form_count} forms, {domain.users} users")
    for user in config.users:
        print(f"  user {user.username}, API key {user.api_key}, member of {', '.join(user.domains) or 'nothing'}")
    if config.faults.rules:
        print("  faults: " + ", ".join(f"{r.scope}:{r.kind}={r.rate}" for r in config.faults.rules))
    if config.behaviour != WireBehaviour():
        print(f"  behaviour: {config.behaviour.to_json()}")
    if config.control_api:
        print(f"  control API: {base}/_sim/state")
    print(f"  try: curl -H 'Authorization: ApiKey {config.users[0].username}:{config.users[0].api_key}' "
          f"'{base}/a/{config.domains[0].name}/api/case/v2/?limit=1'", flush=True)
    try:
        from data_explorer.simulator.runner import serve

        serve(config, args.host, args.port)
    except KeyboardInterrupt:
        pass
    return 0


def _port(text: str) -> int:
    value = _count(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError("must be between 1 and 65535")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _fault_rule(text: str) -> FaultRule:
    spec, sep, rate = text.partition("=")
    scope, _, kind = spec.rpartition(":")
    try:
        return FaultRule(kind, float(rate), scope or "all")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc) if sep else "use [SCOPE:]KIND=RATE, e.g. cases:server_error=0.1") from None
