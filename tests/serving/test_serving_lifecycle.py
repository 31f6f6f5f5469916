"""One /readyz shape for every service: ready, problems by check, the checks, the details and
the service's own fields; 503 while a check fails or the process drains."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from serving.lifecycle import install


async def test_readiness_has_one_shape_ready_or_not() -> None:
    app = web.Application()
    lifecycle = install(app)
    reason: dict[str, str | None] = {"database": None}

    async def database() -> str | None:
        return reason["database"]

    lifecycle.add_check("database", database)
    lifecycle.add_detail("policy", lambda: {"version": "v1"})
    lifecycle.add_field("identity", lambda: {"node_id": "n1"})
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/readyz")
        assert response.status == 200
        assert await response.json() == {
            "ready": True,
            "problems": {},
            "checks": ["database"],
            "details": {"policy": {"version": "v1"}},
            "identity": {"node_id": "n1"},
        }
        reason["database"] = "the database does not answer"
        response = await client.get("/readyz")
        assert response.status == 503
        body = await response.json()
        assert (body["ready"], body["problems"]) == (False, {"database": reason["database"]})
        assert body["identity"] == {"node_id": "n1"}  # said, ready or not
        reason["database"] = None
        await app.shutdown()  # the on_shutdown step of a SIGTERM
        body = await (await client.get("/readyz")).json()
        assert body["problems"] == {"lifecycle": "shutting down"}
        assert (await client.get("/healthz")).status == 200


async def test_a_slow_check_is_joined_not_repeated() -> None:
    """Probes that give up before a slow check answers (a node on Spark, a busy machine) join
    the check that is running instead of starting one each: the next probe gets its answer
    as soon as it has one."""
    app = web.Application()
    lifecycle = install(app)
    started: list[int] = []
    release = asyncio.Event()

    async def database() -> str | None:
        started.append(1)
        await release.wait()
        return None

    lifecycle.add_check("database", database)
    async with TestClient(TestServer(app)) as client:
        for _ in range(3):  # each prober gives up after its timeout
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await client.get("/readyz")
        assert len(started) == 1
        waiting = asyncio.ensure_future(client.get("/readyz"))
        await asyncio.sleep(0.1)
        release.set()
        async with asyncio.timeout(5):
            assert (await waiting).status == 200
        assert len(started) == 1
        release.clear()
        asyncio.get_running_loop().call_later(0.1, release.set)
        assert (await client.get("/readyz")).status == 200  # a new probe, a new run
        assert len(started) == 2
