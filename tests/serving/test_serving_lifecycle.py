"""One /readyz shape for every service: ready, problems by check, the checks, the details and
the service's own fields; 503 while a check fails or the process drains."""

from __future__ import annotations

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
