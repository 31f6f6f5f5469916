"""The baseline: a minimal hand-written aiohttp fan-out, the floor the gateway is measured
against in the same run.

`POST /fanout` sends the same HTTP calls the gateway sends (one `POST /v1/query` per node with
a `tessera/1` body of the same shape and the same headers, over one shared session), gathers
them under one deadline and answers the summed total. No GraphQL, no authentication, no
policy, no signing, no disclosure control, no tracing: what is left is the cost of the HTTP
round trips themselves.

    python -m bench.baseline --port 8600 --node FR=http://127.0.0.1:8501 ...
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import uuid
from collections.abc import Sequence
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from schema.codes import MeasureKind
from schema.wire import APPROVAL_HEADER, CONTENT_TYPE, PROTOCOL, QUERY_PATH

FANOUT_PATH: Final = "/fanout"
DEADLINE_S: Final = 10.0
# Stand-ins of the same size as the gateway's signed request token and a researcher token.
BEARER: Final = "Bearer " + "x" * 420
APPROVAL: Final = "y" * 700
# What every node call of the bare fan-out carries (`bench.node_call` sends the same).
HEADERS: Final = {
    "Authorization": BEARER,
    APPROVAL_HEADER: APPROVAL,
    "Content-Type": CONTENT_TYPE,
    "Accept": CONTENT_TYPE,
}


def node_request(query_id: str, jurisdiction: str, query: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "protocol": PROTOCOL,
            "query_id": query_id,
            "request_id": "DR-2026-0042",
            "jurisdiction": jurisdiction,
            "query": query,
            "approval": {"request_id": "DR-2026-0042", "purpose": "scientific_research"},
            "subject": "researcher@bench.tessera.eu",
        }
    )


# The node part of the benchmark's cohort question (see `bench.queries.COHORT`).
NODE_QUERY: Final = {
    "criteria": {
        "sex": "FEMALE",
        "age": {"min": 40, "max": 69},
        "conditions": [{"vocabulary": "ICD10", "code": "E11", "descendants": True}],
    },
    "reference_date": "2026-01-01",
    "tables": [[], ["SEX", "AGE_BAND_10"]],
}


def create_app(nodes: Sequence[tuple[str, str]]) -> web.Application:
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def lifetime(app: web.Application) -> Any:
        app[session_key] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, limit_per_host=32, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        yield
        await app[session_key].close()

    async def fanout(request: web.Request) -> web.Response:
        session = request.app[session_key]
        query_id = str(uuid.uuid4())

        async def ask(jurisdiction: str, url: str) -> int:
            body = node_request(query_id, jurisdiction, NODE_QUERY)
            async with session.post(url + QUERY_PATH, data=body, headers=HEADERS) as response:
                answer = orjson.loads(await response.read())
            total: int = answer["tables"][0]["cells"][0]["values"][MeasureKind.PERSON_COUNT.value][
                "value"
            ]
            return total

        async with asyncio.timeout(DEADLINE_S):
            counts = await asyncio.gather(*(ask(j, url) for j, url in nodes))
        return web.Response(
            body=orjson.dumps({"queryId": query_id, "count": sum(counts)}),
            content_type=CONTENT_TYPE,
        )

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"ready": True, "problems": {}})

    app = web.Application()
    app.cleanup_ctx.append(lifetime)
    app.router.add_post(FANOUT_PATH, fanout)
    app.router.add_get("/readyz", ready)
    return app


def _node(text: str) -> tuple[str, str]:
    code, _, url = text.partition("=")
    return code.upper(), url.rstrip("/")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    parser.add_argument("--node", type=_node, action="append", required=True, help="CODE=URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    sock = socket.create_server((args.host, args.port))
    web.run_app(
        create_app(args.node),
        sock=sock,
        access_log=None,
        print=lambda *_: print(f"baseline listening on {args.port}", flush=True),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
