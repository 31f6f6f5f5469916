"""`trust.http_edge`: aiohttp's own refusals answered by the service's JSON, nothing of the
request echoed or logged; a real server on a loopback socket, spoken to byte by byte."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from schema.errors import ErrorCode
from trust.http_edge import EdgeRunner


def refusal(status: int, code: ErrorCode, message: str) -> web.Response:
    body = orjson.dumps({"code": code.value, "message": message})
    return web.Response(status=status, body=body, content_type="application/json")


async def fails(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/bug", fails)
    runner = EdgeRunner(app, refusal=refusal, handle_signals=False)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    yield sock.getsockname()[1]
    await runner.cleanup()


async def exchange(port: int, data: bytes) -> tuple[int, dict[str, str]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    received = await reader.read()
    writer.close()
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    assert b"Content-Type: application/json" in head
    return status, orjson.loads(body)


async def test_an_oversized_header(port: int, caplog: pytest.LogCaptureFixture) -> None:
    token = "eyJsecret-prefix" + "A" * 9000
    request = f"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    with caplog.at_level(logging.DEBUG):
        status, body = await exchange(port, request)
    assert (status, body["code"]) == (431, "HEADER_TOO_LARGE")
    assert "secret-prefix" not in str(body)
    assert "secret-prefix" not in caplog.text
    assert "(LineTooLong): HEADER_TOO_LARGE" in caplog.text
    assert all(r.exc_info is None for r in caplog.records)


async def test_a_malformed_request(port: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        status, body = await exchange(port, b"GET / HTTP/1.1\r\nX-secret\x01: y\r\n\r\n")
    assert (status, body) == (
        400,
        {"code": "BAD_REQUEST", "message": "the request is not well-formed HTTP"},
    )
    assert "secret" not in caplog.text


async def test_a_bug_past_the_middleware(port: int, caplog: pytest.LogCaptureFixture) -> None:
    status, body = await exchange(port, b"GET /bug HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == (500, {"code": "INTERNAL", "message": "internal error"})
    assert "unexpected RuntimeError while handling a request" in caplog.text
