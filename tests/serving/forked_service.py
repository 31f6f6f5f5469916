"""A small service on `serving.prefork`, run as a program by test_serving_prefork:

    python tests/serving/forked_service.py PORT WORKERS [FAILING_WORKER]

Each worker answers `GET /` with its number, pid and the SIGHUPs it received, and `GET /slow`
after a second (a request in flight when SIGTERM comes). FAILING_WORKER fails at start with
a ConfigError."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable

from aiohttp import web

from schema.errors import ConfigError
from serving.prefork import reserve, serve_forked
from serving.run import listening_line, serve_on


def main(argv: list[str]) -> int:
    port, workers = int(argv[0]), int(argv[1])
    failing = int(argv[2]) if len(argv) > 2 else None

    def worker(number: int, listen: Callable[[], socket.socket], ready: Callable[[], None]) -> None:
        if number == failing:
            raise ConfigError("the settings of this worker are wrong")

        hangups: list[int] = []

        async def whoami(request: web.Request) -> web.Response:
            return web.json_response({"worker": number, "pid": os.getpid(), "hups": len(hangups)})

        async def on_hangup(app: web.Application) -> None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hangups.append, 1)

        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(1.0)
            return web.json_response({"worker": number, "slow": True})

        app = web.Application()
        app.on_startup.append(on_hangup)
        app.router.add_get("/", whoami)
        app.router.add_get("/slow", slow)
        serve_on(
            app,
            sock=listen(),
            ready=ready,
            refusal=lambda status, code, message: web.Response(status=status),
            shutdown_timeout_s=5.0,
        )

    with reserve("127.0.0.1", port) as sock:
        line = listening_line("forked", sock, "127.0.0.1")
        return serve_forked(workers, sock, worker, announce_line=line)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
