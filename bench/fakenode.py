"""Controlled-delay nodes: stand-ins for connectors that speak `tessera/1` and answer after a
delay drawn from a configured range, so that the gateway's own cost can be told apart from the
nodes'. Several nodes share one process (one port each) to keep 30 of them cheap on 2 cores.

A node checks what a real connector checks cheaply (a bearer token and an approval header are
present, the body is a `tessera/1` request for its jurisdiction; `--strict` validates the whole
body against `NodeRequest`), does not verify signatures (verification is the connector's cost,
measured by the connector benchmark, not the gateway's), and answers a valid `NodeResponse`
with every cell of each table's public domain (`policies.domain`), every count noisy (as a
connector's: status PERTURBED with an sd above any jurisdiction's) and large enough to be
released everywhere.

Each node records its own time per query (from its handler's start to the answer's bytes) so
that a benchmark can subtract the slowest node's own time from the gateway's end-to-end
latency. `GET /_bench/timings` returns `{query_id: {jurisdiction: ms}}` for every node of the
process, `DELETE /_bench/timings` forgets them, `GET /_bench/stats` tells the peak number of
requests in flight.

    python -m bench.fakenode --node FR=8501 --node DE=8502 --delay-ms 20:50
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import web
from pydantic import ValidationError

from policies.domain import table_domain
from schema.codes import Jurisdiction, MeasureKind
from schema.errors import ErrorCode
from schema.query import CohortQuery
from schema.wire import (
    APPROVAL_HEADER,
    CONTENT_TYPE,
    HEALTH_PATH,
    PROTOCOL,
    QUERY_PATH,
    READY_PATH,
    NodeRequest,
)

TIMINGS_PATH: Final = "/_bench/timings"
STATS_PATH: Final = "/_bench/stats"
# Every count at least this: above any minimum cell size, so nothing is suppressed.
MIN_COUNT: Final = 1000
# More than the largest table (4 dimensions, at most a few thousand cells of < 10,000) adds up
# to, and small enough that 30 nodes' totals pool to less than 2^31: GraphQL's Int is 32 bits,
# and a larger pooled count is a field error (at 100M per node, every 30-node query failed).
TOTAL_BASE: Final = 50_000_000


def count(jurisdiction: str, key: Sequence[str]) -> int:
    """A stable, releasable count for a cell. The total (the empty key) exceeds what any
    table's cells add up to, so the gateway's vetting (cells within the total) accepts it."""
    digest = hashlib.blake2b(f"{jurisdiction}/{'/'.join(key)}".encode(), digest_size=4).digest()
    base = TOTAL_BASE if not key else MIN_COUNT
    return base + int.from_bytes(digest, "big") % 9000


# The sd of a connector's noise, above any jurisdiction's (coarse questions included), so the
# gateway's vetting accepts the answers as noisy enough.
NOISE_SD: Final = 50.0


def tables(jurisdiction: str, query: CohortQuery) -> list[dict[str, Any]]:
    return [
        {
            "by": [d.value for d in by],
            "cells": [
                {
                    "key": list(key),
                    "values": {
                        MeasureKind.PERSON_COUNT.value: {
                            "value": count(jurisdiction, key),
                            "status": "PERTURBED",
                            "sd": NOISE_SD,
                        }
                    },
                }
                for key in table_domain(by, query)
            ],
        }
        for by in query.tables
    ]


@dataclass(frozen=True, slots=True)
class Delay:
    """Uniform in [low_ms, high_ms]."""

    low_ms: float
    high_ms: float

    @classmethod
    def parse(cls, text: str) -> Delay:
        low, _, high = text.partition(":")
        delay = cls(float(low), float(high or low))
        if not 0 <= delay.low_ms <= delay.high_ms:
            raise ValueError("expected LOW:HIGH milliseconds with 0 <= LOW <= HIGH")
        return delay

    def draw(self, rng: random.Random) -> float:
        return rng.uniform(self.low_ms, self.high_ms) / 1000


@dataclass
class Recorder:
    """Own times of every node of the process, and the peak of requests in flight."""

    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    in_flight: int = 0
    peak_in_flight: int = 0
    answered: int = 0

    def record(self, query_id: str, jurisdiction: str, own_ms: float) -> None:
        self.timings.setdefault(query_id, {})[jurisdiction] = own_ms
        self.answered += 1


RECORDER: Final = web.AppKey("recorder", Recorder)


def _error(code: ErrorCode, message: str, status: int) -> web.Response:
    return web.Response(
        body=orjson.dumps({"code": code.value, "message": message}),
        status=status,
        content_type=CONTENT_TYPE,
    )


def node_app(
    jurisdiction: Jurisdiction,
    delay: Delay,
    recorder: Recorder,
    *,
    seed: int = 0,
    strict: bool = False,
) -> web.Application:
    rng = random.Random(f"{seed}/{jurisdiction.value}")
    shapes: dict[bytes, list[dict[str, Any]]] = {}

    async def query(request: web.Request) -> web.Response:
        started = time.perf_counter()
        recorder.in_flight += 1
        recorder.peak_in_flight = max(recorder.peak_in_flight, recorder.in_flight)
        try:
            body = await request.read()
            if not request.headers.get("Authorization", "").startswith("Bearer "):
                return _error(ErrorCode.BAD_SIGNATURE, "missing bearer token", 401)
            if APPROVAL_HEADER not in request.headers:
                return _error(ErrorCode.BAD_REQUEST, "missing approval token", 400)
            try:
                asked = _parse(body, strict=strict)
            except (ValueError, KeyError, TypeError):
                return _error(ErrorCode.BAD_REQUEST, "not a tessera/1 request", 400)
            if asked["jurisdiction"] != jurisdiction.value:
                return _error(ErrorCode.WRONG_NODE, "wrong node", 421)
            # The domain of a table depends on the criteria too (ages, sex, date windows).
            shape = orjson.dumps(asked["query"])
            answer_tables = shapes.get(shape)
            if answer_tables is None:
                query = CohortQuery.model_validate(asked["query"])
                answer_tables = shapes[shape] = tables(jurisdiction.value, query)
            await asyncio.sleep(delay.draw(rng))
            own_ms = (time.perf_counter() - started) * 1000
            answer = orjson.dumps(
                {
                    "protocol": PROTOCOL,
                    "query_id": asked["query_id"],
                    "jurisdiction": jurisdiction.value,
                    "status": "OK",
                    "tables": answer_tables,
                    "optout_register_version": "bench",
                    "elapsed_ms": own_ms,
                }
            )
            recorder.record(asked["query_id"], jurisdiction.value, own_ms)
            return web.Response(body=answer, content_type=CONTENT_TYPE)
        finally:
            recorder.in_flight -= 1

    app = web.Application()
    app.router.add_post(QUERY_PATH, query)
    app.router.add_get(HEALTH_PATH, _ok)
    app.router.add_get(READY_PATH, _ok)
    app.router.add_get(TIMINGS_PATH, _timings)
    app.router.add_delete(TIMINGS_PATH, _forget)
    app.router.add_get(STATS_PATH, _stats)
    app[RECORDER] = recorder
    return app


def _parse(body: bytes, *, strict: bool) -> dict[str, Any]:
    if strict:
        try:
            return NodeRequest.model_validate_json(body).model_dump(mode="json")
        except ValidationError as e:
            raise ValueError("invalid request") from e
    asked = orjson.loads(body)
    if not isinstance(asked, dict) or asked.get("protocol") != PROTOCOL:
        raise ValueError("not tessera/1")
    if not isinstance(asked["query_id"], str) or not isinstance(asked["query"]["tables"], list):
        raise ValueError("malformed request")
    return asked


async def _ok(_: web.Request) -> web.Response:
    return web.json_response({"ready": True, "problems": {}})


async def _timings(request: web.Request) -> web.Response:
    recorder = request.app[RECORDER]
    return web.Response(body=orjson.dumps(recorder.timings), content_type=CONTENT_TYPE)


async def _forget(request: web.Request) -> web.Response:
    recorder = request.app[RECORDER]
    recorder.timings = {}
    recorder.peak_in_flight = recorder.in_flight
    return web.json_response({"status": "ok"})


async def _stats(request: web.Request) -> web.Response:
    recorder = request.app[RECORDER]
    return web.json_response(
        {"peak_in_flight": recorder.peak_in_flight, "answered": recorder.answered}
    )


async def serve(
    nodes: Sequence[tuple[Jurisdiction, int]],
    delay: Delay,
    *,
    host: str = "127.0.0.1",
    seed: int = 0,
    strict: bool = False,
) -> None:
    recorder = Recorder()
    runners = []
    for jurisdiction, port in nodes:
        runner = web.AppRunner(
            node_app(jurisdiction, delay, recorder, seed=seed, strict=strict),
            access_log=None,
        )
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        runners.append(runner)
    print(f"{len(nodes)} fake nodes listening on {host}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for runner in runners:
        await runner.cleanup()


def _node(text: str) -> tuple[Jurisdiction, int]:
    code, _, port = text.partition("=")
    return Jurisdiction(code.upper()), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fakenode", description=__doc__)
    parser.add_argument("--node", type=_node, action="append", required=True, help="CODE=PORT")
    parser.add_argument("--delay-ms", type=Delay.parse, default=Delay(20, 50), help="LOW:HIGH")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strict", action="store_true", help="validate requests fully")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.node, args.delay_ms, host=args.host, seed=args.seed, strict=args.strict))
    return 0


if __name__ == "__main__":
    sys.exit(main())
