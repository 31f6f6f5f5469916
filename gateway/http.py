"""HTTP-level refusals of the gateway, as GraphQL-shaped JSON with a stable code.

Whatever fails before GraphQL runs (a body over the size limit, a body that is not a JSON
object or array, too large a batch, an unknown route or method) or escapes it by a bug,
answers `{"errors": [{"message": ..., "extensions": {"code": ...}}]}`: never aiohttp's
plain-text pages, never a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.graphql.operations import UNKNOWN_OPERATION
from schema.errors import ErrorCode
from trust.http_edge import BODY_ERRORS, body_refused

log = logging.getLogger(__name__)

# Strawberry's refusals come as (status, reason); these reasons name a batch problem.
BATCH_REASONS: Final = frozenset({"Too many operations", "Batching is not enabled"})
_STATUS_CODES: Final = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.BODY_TOO_LARGE,
    503: ErrorCode.TEMPORARILY_UNAVAILABLE,
}

# Strawberry's and aiohttp's reasons that never hold anything of the request.
_FIXED_REASONS: Final = frozenset(
    {
        "No GraphQL query found in the request",
        "Unable to parse request body as JSON",
        "Unable to parse the multipart body",
        "File(s) missing in form data",
        "GraphQL only supports GET and POST requests.",
        "queries are not allowed when using GET",
        "mutations are not allowed when using GET",
        "mutations are not allowed when using POST",
        "subscriptions are not allowed when using POST",
        "subscriptions are not allowed when using GET",
        "Can't get GraphQL operation type",
        "Unsupported content type",
        "Unsupported Media Type",
        "Not Found",
        "Method Not Allowed",
        "Service Unavailable",
        "starting",
    }
)
_UNKNOWN_OPERATION: Final = "Unknown operation named"

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
    """The answer to an HTTP-level refusal of strawberry's or aiohttp's (its status and
    reason). Some of their reasons quote the request (strawberry's `Unknown operation named
    "<operationName>"`): only the fixed ones below are passed on."""
    if reason in BATCH_REASONS:
        return error_response(status, ErrorCode.BATCH_TOO_LARGE, "too many operations in a batch")
    if reason.startswith(_UNKNOWN_OPERATION):
        return error_response(status, ErrorCode.GRAPHQL_VALIDATION_FAILED, UNKNOWN_OPERATION)
    code = _STATUS_CODES.get(status, ErrorCode.BAD_REQUEST)
    text = reason if reason in _FIXED_REASONS else HTTPStatus(status).phrase
    return error_response(status, code, text)


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
        except BODY_ERRORS as e:
            return error_response(*body_refused(e))
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return refusal(e.status, e.reason)
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            return error_response(500, ErrorCode.INTERNAL, "Internal error.")

    return middleware
