"""A misbehaving node, run as its own process for fault-injection tests:

    python tests/integration/faulty_node.py --jurisdiction FI --port 8500 --mode sleep

It speaks just enough `tessera/1` to be asked (it reads the request, checks no signature) and
then misbehaves as `--mode` says:

- `sleep`: answers correctly, but only after `--sleep` seconds (default 60);
- `slow`: the same, meant with a short `--sleep` that fits in a deadline;
- `garbage`: answers 200 with a body that is not `tessera/1`;
- `small-count`: a well-formed, noisy answer releasing a total of 2, below any published
  minimum;
- `reset`: resets the connection (TCP RST) as soon as the request arrives;
- `die`: starts a 200 answer, then kills itself with SIGKILL halfway through it.

`GET /readyz` answers 200; `GET /stats` counts requests received, answered, and cancelled
(the gateway went away while this node was still working).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import struct
import sys
from typing import Any

from aiohttp import web

from policies.domain import table_domain
from schema.codes import Jurisdiction, MeasureKind, NodeStatus, ValueStatus
from schema.result import Value
from schema.wire import QUERY_PATH, NodeCell, NodeRequest, NodeResponse, NodeTable

MODES = ("sleep", "slow", "garbage", "small-count", "reset", "die")
HONEST_TOTAL = 50
STATS = web.AppKey("stats", dict)


# Noisier than any jurisdiction publishes, so that the gateway takes it for a connector's.
SD = 50.0


def answer(request: NodeRequest, total: int) -> bytes:
    """The total as `total`, every other cell of each table's public domain LOW."""
    released = Value(value=total, status=ValueStatus.PERTURBED, sd=SD)
    tables = [
        NodeTable(
            by=by,
            cells=[
                NodeCell(
                    key=list(key),
                    values={MeasureKind.PERSON_COUNT: released if by == () else Value.low(sd=SD)},
                )
                for key in table_domain(by, request.query)
            ],
        )
        for by in request.query.tables
    ]
    response = NodeResponse(
        query_id=request.query_id,
        jurisdiction=request.jurisdiction,
        status=NodeStatus.OK,
        tables=tables,
        optout_register_version="faulty-1",
    )
    return response.model_dump_json().encode()


def make_app(mode: str, sleep_s: float) -> web.Application:
    stats: dict[str, int] = {"requests": 0, "answered": 0, "cancelled": 0}

    async def query(http: web.Request) -> web.StreamResponse:
        stats["requests"] += 1
        request = NodeRequest.model_validate_json(await http.read())
        if mode == "reset":
            transport = http.transport
            assert transport is not None
            sock: socket.socket = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            raise web.HTTPInternalServerError  # never sent: the connection is gone
        if mode == "garbage":
            body = b'{"protocol": "tessera/1", "rows": [[1, 2, 3]], "hello": "world"}'
            return web.Response(body=body, content_type="application/json")
        if mode == "small-count":
            stats["answered"] += 1
            return web.Response(body=answer(request, 2), content_type="application/json")
        if mode == "die":
            response = web.StreamResponse(
                headers={"Content-Type": "application/json", "Content-Length": "4096"}
            )
            await response.prepare(http)
            await response.write(answer(request, HONEST_TOTAL)[:40])
            await asyncio.sleep(0.05)
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            await asyncio.sleep(sleep_s)
        except asyncio.CancelledError:
            stats["cancelled"] += 1
            raise
        stats["answered"] += 1
        return web.Response(body=answer(request, HONEST_TOTAL), content_type="application/json")

    async def ready(http: web.Request) -> web.Response:
        return web.json_response({"ready": True, "problems": {}, "mode": mode})

    async def report(http: web.Request) -> web.Response:
        return web.json_response(http.app[STATS])

    app = web.Application()
    app[STATS] = stats
    app.router.add_post(QUERY_PATH, query)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/stats", report)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jurisdiction", type=Jurisdiction, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--sleep", type=float, default=60.0)
    args: Any = parser.parse_args(argv)
    print(f"faulty node {args.jurisdiction.value} ({args.mode}) on {args.port}", flush=True)
    web.run_app(
        make_app(args.mode, args.sleep),
        host=args.host,
        port=args.port,
        handler_cancellation=True,
        print=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
