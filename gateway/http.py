"""HTTP-level refusals of the gateway, as GraphQL-shaped JSON with a stable code.

Whatever fails before GraphQL runs (a body over the size limit, a body that is not a JSON
object or array, too large a batch, an unknown route or method) or escapes it by a bug,
answers `{"errors": [{"message": ..., "extensions": {"code": ...}}]}`: never aiohttp's
plain-text pages, never a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from schema.errors import ErrorCode

log = logging.getLogger(__name__)

# Strawberry's refusals come as (status, reason); these reasons name a batch problem.
BATCH_REASONS: Final = frozenset({"Too many operations", "Batching is not enabled"})
_STATUS_CODES: Final = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.BODY_TOO_LARGE,
    503: ErrorCode.TEMPORARILY_UNAVAILABLE,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(
    status: int,
    code: ErrorCode,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> web.Response:
    body = {"errors": [{"message": message, "extensions": {"code": code.value, **extensions}}]}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def refusal(status: int, reason: str) -> web.Response:
    """The answer to an HTTP-level refusal of strawberry's (its status and reason)."""
    if reason in BATCH_REASONS:
        return error_response(status, ErrorCode.BATCH_TOO_LARGE, "too many operations in a batch")
    code = _STATUS_CODES.get(status, ErrorCode.BAD_REQUEST)
    # Strawberry's reasons are fixed texts of its own, never the request's content.
    return error_response(status, code, reason[:200])


def body_too_large(limit: int) -> web.Response:
    return error_response(
        413, ErrorCode.BODY_TOO_LARGE, f"the request body exceeds {limit} bytes", limit=limit
    )


def retry_after(errors: Iterable[Mapping[str, object]]) -> int | None:
    """The longest `retryAfter` of the errors of a response, if any asks to retry."""
    waits = []
    for error in errors:
        extensions = error.get("extensions")
        wait = extensions.get("retryAfter") if isinstance(extensions, dict) else None
        if isinstance(wait, int):
            waits.append(wait)
    return max(waits) if waits else None


def http_errors(max_body_bytes: int) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return body_too_large(max_body_bytes)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return refusal(e.status, e.reason)
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            return error_response(500, ErrorCode.INTERNAL, "Internal error.")

    return middleware
