"""`bench.node_call` compares clients that really ask the nodes: each gets every node's answer,
and the minimal client reuses its keep-alive connections. No timing is asserted."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestServer

from bench.node_call import StreamsClient, measure, report
from schema.wire import QUERY_PATH


async def test_the_minimal_client_posts_and_keeps_its_connection() -> None:
    seen: list[bytes] = []
    peers: set[object] = set()

    async def answer(request: web.Request) -> web.Response:
        seen.append(await request.read())
        peers.add(request.transport)
        return web.Response(body=b'{"ok": true}', content_type="application/json")

    app = web.Application()
    app.router.add_post(QUERY_PATH, answer)
    async with TestServer(app) as server:
        client = StreamsClient()
        url = str(server.make_url("")).rstrip("/")
        assert await client.post(url, b'{"a": 1}') == (200, b'{"ok": true}')
        assert await client.post(url, b'{"b": 2}') == (200, b'{"ok": true}')
        client.close()
    assert seen == [b'{"a": 1}', b'{"b": 2}']
    assert len(peers) == 1  # one connection, kept alive


async def test_every_client_gets_every_nodes_answer() -> None:
    # `measure` raises when a node refuses or answers nothing.
    found = await measure(2, 1)
    assert all(len(blocks) == 1 and blocks[0] > 0 for blocks in found.values())
    assert "× minimal" in report(found)
