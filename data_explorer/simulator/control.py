"""The control API under ``/_sim/``, for tests and the demo. No CommCare auth; off when the config says so.

- ``GET  /_sim/state``   data version, and counts per project space: ``cases``, ``forms`` (archived ones
  included; ``forms_archived`` of them), ``users`` (active; ``users_archived`` besides), ``apps``
- ``POST /_sim/mutate``  ``{"domain", ...}`` and the fields of ``Mutation`` (updates, new records,
  deletions, archives, unarchives, by count or by id; ``late_by``, ``visible_after``) → the ids changed
- ``GET  /_sim/faults``, ``PUT /_sim/faults``  the fault configuration (see ``FaultConfig.from_json``)
- ``GET  /_sim/behaviour``, ``PUT /_sim/behaviour``  how records are served (see ``WireBehaviour.from_json``)
- ``GET  /_sim/stats``   requests per endpoint and status, faults fired
- ``POST /_sim/reset``   data back to version 0, stats and faults as configured; ``{"tokens": true}`` also
  forgets every OAuth token
- ``POST /_sim/clock``   ``{"advance": seconds}`` moves the token clock forward (expiry without sleeping)
"""

from __future__ import annotations

import json
from typing import Any

from data_explorer.simulator import wire
from data_explorer.simulator.asgi import Request, Response
from data_explorer.simulator.config import FaultConfig, WireBehaviour
from data_explorer.simulator.mutation import Mutation
from data_explorer.simulator.queries import bad_request, error
from data_explorer.simulator.runtime import Runtime


async def _json(req: Request) -> dict[str, Any]:
    raw = await req.body()
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise bad_request("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    return data


async def state(rt: Runtime, req: Request) -> Response:
    return Response(200, wire.dumps({
        **rt.dataset.state(),
        "seed": rt.config.seed,
        "token_ttl": rt.config.token_ttl,
        "faults": rt.faults.config.to_json(),
        "behaviour": rt.behaviour.to_json(),
    }))


def mutate_now(rt: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    """Apply a mutation request; ValueError or KeyError when it is malformed."""
    changes = dict(data)
    domain = changes.pop("domain", None)
    mutation = Mutation.from_json(changes)
    if domain not in rt.dataset.spaces:
        raise KeyError(f"no project space {domain!r}")
    result = rt.dataset.mutate(domain, **{name: getattr(mutation, name) for name in changes})
    rt.data_changed()
    return result


async def mutate(rt: Runtime, req: Request) -> Response:
    try:
        result = mutate_now(rt, await _json(req))
    except KeyError as exc:
        raise error(404, str(exc.args[0])) from None
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return Response(200, wire.dumps(result))


async def get_faults(rt: Runtime, req: Request) -> Response:
    return Response(200, wire.dumps(rt.faults.config.to_json()))


async def put_faults(rt: Runtime, req: Request) -> Response:
    try:
        config = FaultConfig.from_json(await _json(req))
    except (TypeError, ValueError) as exc:
        raise bad_request(str(exc)) from None
    rt.faults.set(config)
    return Response(200, wire.dumps(config.to_json()))


async def get_behaviour(rt: Runtime, req: Request) -> Response:
    return Response(200, wire.dumps(rt.behaviour.to_json()))


async def put_behaviour(rt: Runtime, req: Request) -> Response:
    try:
        behaviour = WireBehaviour.from_json(await _json(req))
    except (TypeError, ValueError) as exc:
        raise bad_request(str(exc)) from None
    rt.set_behaviour(behaviour)
    return Response(200, wire.dumps(behaviour.to_json()))


async def stats(rt: Runtime, req: Request) -> Response:
    return Response(200, wire.dumps(rt.stats()))


async def reset(rt: Runtime, req: Request) -> Response:
    data = await _json(req)
    rt.reset(tokens=bool(data.get("tokens")))
    return Response(200, wire.dumps(rt.dataset.state()))


async def clock(rt: Runtime, req: Request) -> Response:
    advance = (await _json(req)).get("advance")
    if isinstance(advance, bool) or not isinstance(advance, (int, float)) or advance < 0:
        raise bad_request("advance must be a non-negative number of seconds")
    rt.auth.advance(float(advance))
    return Response(200, wire.dumps({"offset": rt.auth.offset}))
