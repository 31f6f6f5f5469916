"""The edge of an aiohttp service: what it answers to a request aiohttp refuses before any
handler or middleware runs, and `run_app`, which serves an app with that answer.

aiohttp's HTTP parser refuses a request line or header over 8190 bytes, a malformed header,
a bad method and the like while it reads the connection; its `RequestHandler.handle_error`
then answers a plain-text 400 that quotes the start of the offending input (a bearer token,
say) and logs a traceback whose message quotes it too, before any authentication. The
`EdgeRequestHandler` answers these with the service's own JSON error instead, with a stable
code and a fixed message, and logs one line naming the exception's class only: nothing of
the request is echoed or logged. aiohttp has no setting for the handler class, so `run_app`
does what `aiohttp.web.run_app` does (signal handling, graceful shutdown) through a runner
whose server makes `EdgeRequestHandler`s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from schema.errors import ErrorCode

log = logging.getLogger(__name__)

# What reading a request body raises when aiohttp's parser cannot read it (its framing, its
# content encoding): the client's fault, never a bug.
BODY_ERRORS: Final = (HttpProcessingError, RequestPayloadError)

# The service's error body for a status, a code and a fixed message.
Refusal = Callable[[int, ErrorCode, str], web.Response]

HEADER_TOO_LARGE_MESSAGE: Final = (
    "the request line or a header field is too long (at most 8190 bytes each)"
)
MALFORMED_MESSAGE: Final = "the request is not well-formed HTTP"
BODY_MALFORMED_MESSAGE: Final = "the request body is not well-formed (its length or encoding)"
INTERNAL_MESSAGE: Final = "internal error"


def body_refused(exc: Exception) -> tuple[int, ErrorCode, str]:
    """What a handler's middleware answers when reading the request body fails in aiohttp's
    parser (the body's framing or encoding, never its content); logged without it."""
    log.warning("refused a request body aiohttp could not read (%s)", type(exc).__name__)
    return HTTPStatus.BAD_REQUEST, ErrorCode.BAD_REQUEST, BODY_MALFORMED_MESSAGE


def classify_error(status: int, exc: BaseException | None) -> tuple[int, ErrorCode, str]:
    """The status, code and fixed message for an error aiohttp hands to `handle_error`."""
    if isinstance(exc, LineTooLong):
        return (
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode.HEADER_TOO_LARGE,
            HEADER_TOO_LARGE_MESSAGE,
        )
    if status >= 500:
        return HTTPStatus.INTERNAL_SERVER_ERROR, ErrorCode.INTERNAL, INTERNAL_MESSAGE
    return HTTPStatus.BAD_REQUEST, ErrorCode.BAD_REQUEST, MALFORMED_MESSAGE


class EdgeRequestHandler(RequestHandler):
    """aiohttp's protocol handler, answering its own refusals with `refusal` and logging
    them without the request's content."""

    def __init__(self, *args: Any, refusal: Refusal, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refusal = refusal

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        # Also after a response: a request body aiohttp cannot read (bad chunking, a body
        # that does not decompress) fails again while the rest of it is drained.
        exc = kwargs.get("exc_info")
        if isinstance(exc, BODY_ERRORS):
            log.warning("a request body aiohttp could not drain (%s)", type(exc).__name__)
            return
        super().log_exception(*args, **kwargs)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # `message` and `str(exc)` quote the input: neither is used.
        status, code, text = classify_error(status, exc)
        kind = type(exc).__name__ if exc is not None else "error"
        if isinstance(exc, HttpProcessingError):
            # Traffic that is not HTTP at all is common on a public port: not worth a warning.
            level = logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.WARNING
            log.log(level, "refused a request aiohttp could not parse (%s): %s", kind, code.value)
        else:
            # A bug past the service's own error middleware: its traceback is what finds it.
            log.error("unexpected %s while handling a request", kind, exc_info=exc)
        if request.writer.output_size > 0:
            raise ConnectionError("the response was partly sent; the connection is closed")
        response = self._refusal(status, code, text)
        response.force_close()
        return response


class _EdgeServer(Server):
    """aiohttp's server, making `EdgeRequestHandler`s for its connections."""

    refusal: Refusal

    def __call__(self) -> RequestHandler:
        return EdgeRequestHandler(self, loop=self._loop, refusal=self.refusal, **self._kwargs)


class EdgeRunner(web.AppRunner):
    def __init__(self, app: web.Application, *, refusal: Refusal, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._refusal = refusal

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        # The same object, its class narrowed to the subclass that only changes which
        # handler it makes: the app's own server construction stays aiohttp's.
        server.__class__ = _EdgeServer
        assert isinstance(server, _EdgeServer)
        server.refusal = self._refusal
        return server


async def _serve(
    app: web.Application, sock: socket.socket, ready: Callable[[], None], **kwargs: Any
) -> None:
    runner = EdgeRunner(app, **kwargs)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        ready()
        await asyncio.Event().wait()  # until cancelled (SIGINT/SIGTERM)
    finally:
        await runner.cleanup()


def run_app(
    app: web.Application,
    *,
    sock: socket.socket,
    ready: Callable[[], None],
    refusal: Refusal,
    shutdown_timeout: float,
    keepalive_timeout: float,
    handler_cancellation: bool,
) -> None:
    """Serve `app` on `sock` until SIGINT/SIGTERM, then shut down gracefully, as
    `aiohttp.web.run_app` does; `ready()` once it accepts connections."""
    loop = asyncio.new_event_loop()
    main = loop.create_task(
        _serve(
            app,
            sock,
            ready,
            refusal=refusal,
            handle_signals=True,
            shutdown_timeout=shutdown_timeout,
            keepalive_timeout=keepalive_timeout,
            handler_cancellation=handler_cancellation,
        )
    )
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            rest = asyncio.all_tasks(loop)
            for task in rest:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            asyncio.set_event_loop(None)
            loop.close()
