"""Running a service: bind its socket, move the heap out of the collector's reach, serve
until SIGTERM/SIGINT and shut down gracefully (`serving.lifecycle`)."""

from __future__ import annotations

import gc
import socket
from collections.abc import Callable
from typing import Final

from aiohttp import web

from trust.http_edge import Refusal, run_app

# Longer than any client keeps an idle connection (the gateway keeps its connections to the
# nodes 15 s by default; researchers' clients less than this), so that the client, not the
# service, closes an idle connection: no request is ever sent on one the service is closing.
KEEPALIVE_TIMEOUT_S: Final = 75.0


def serve_app(
    app: web.Application,
    *,
    host: str,
    port: int,
    announce: str,
    path: str = "",
    refusal: Refusal,
    shutdown_timeout_s: float,
) -> None:
    """Serve `app` on `host`:`port` until SIGTERM/SIGINT; once it accepts connections, print
    one line, `<announce> listening on http://host:port<path>`. What aiohttp refuses before the app
    runs (a header over its limit, say) is answered with `refusal`, echoing nothing. A client
    that disconnects cancels its request (a researcher gone, a gateway past its deadline), and
    with it the work it started."""
    sock = listen(host, port)
    line = listening_line(announce, sock, host, path)
    serve_on(
        app,
        sock=sock,
        ready=lambda: print(line, flush=True),
        refusal=refusal,
        shutdown_timeout_s=shutdown_timeout_s,
    )


def serve_on(
    app: web.Application,
    *,
    sock: socket.socket,
    ready: Callable[[], None],
    refusal: Refusal,
    shutdown_timeout_s: float,
) -> None:
    """Serve `app` on the listening `sock` (`listen`'s, or a worker's of `serving.prefork`)
    until SIGTERM/SIGINT, as `serve_app` does; `ready()` once it accepts connections."""
    freeze_heap()
    run_app(
        app,
        sock=sock,
        ready=ready,
        refusal=refusal,
        shutdown_timeout=shutdown_timeout_s,
        keepalive_timeout=KEEPALIVE_TIMEOUT_S,
        handler_cancellation=True,
    )


def listening_line(announce: str, sock: socket.socket, host: str, path: str = "") -> str:
    """`<announce> listening on http://host:port<path>`, the port the one `sock` is bound to."""
    shown = f"[{host}]" if ":" in host else host
    return f"{announce} listening on http://{shown}:{sock.getsockname()[1]}{path}"


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here rather than by aiohttp so that the line printed names
    the real port, also when port 0 asked for a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


def freeze_heap() -> None:
    """Move everything loaded so far (schema, models, policies, sqlglot: some 80,000 objects
    that live as long as the process) out of the garbage collector's reach. Otherwise every
    full collection walks them all, pydantic's validators deep inside: ~100-120 ms, every ~70
    requests, straight into the latency tail."""
    gc.collect()
    gc.freeze()
