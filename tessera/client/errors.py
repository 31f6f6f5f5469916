"""The client's exceptions: one class per kind of refusal, each carrying the gateway's stable
code (`schema.errors.ErrorCode`) and its details, so that a program can catch a kind
(`except PermissionDenied`) or switch on `error.code`.

The gateway refuses a whole question with a GraphQL error (`extensions.code`); a node that
does not answer is not an error but a status in the answer (`Answer.nodes`).

    >>> error = error_from([{"message": "token expired", "extensions": {"code": "TOKEN_EXPIRED"}}])
    >>> isinstance(error, AuthenticationError), error.code
    (True, <ErrorCode.TOKEN_EXPIRED: 'TOKEN_EXPIRED'>)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from schema.errors import ErrorCode


class TesseraClientError(Exception):
    """A question the gateway refused, or that never reached it.

    `code` is the gateway's stable code (an `ErrorCode`; a plain string for a code newer than
    this client; None when no gateway answered), `details` the error's other extensions (e.g.
    `retryAfter`), `errors` every GraphQL error of the response, `data` whatever partial data
    came with them (never lost), `status` the HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | str | None = None,
        details: Mapping[str, Any] | None = None,
        errors: Sequence[Mapping[str, Any]] = (),
        data: Mapping[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.message = message
        self.code = code
        self.details = dict(details or {})
        self.errors = list(errors)
        self.data = data
        self.status = status


class AuthenticationError(TesseraClientError):
    """The identity token or a permit was refused (UNAUTHENTICATED, TOKEN_*): get a new one."""


class PermissionDenied(TesseraClientError):
    """Authenticated, but not allowed to ask this (FORBIDDEN: no permit, or the wrong role;
    REQUEST_MISMATCH: no permit names the question's data request)."""


class InvalidQuery(TesseraClientError):
    """The question itself is wrong: a GraphQL syntax or validation error (an unknown field,
    dimension or vocabulary), invalid criteria or code, or a question over the gateway's
    limits (size, depth, cost, privacy budget)."""


class RateLimited(TesseraClientError):
    """Too many questions: `retry_after` seconds to wait, when the gateway says."""

    @property
    def retry_after(self) -> int | None:
        wait = self.details.get("retryAfter")
        return wait if isinstance(wait, int) else None


class Unavailable(TesseraClientError):
    """The federation could not answer now: too few nodes (QUORUM_NOT_MET), the audit trail
    or shared state unavailable, an internal error, or no gateway reachable (`code` None)."""


_AUTHENTICATION: Final = frozenset(
    {ErrorCode.UNAUTHENTICATED, ErrorCode.TOO_MANY_PERMITS}
    | {code for code in ErrorCode if code.value.startswith("TOKEN_")}
)
_PERMISSION: Final = frozenset({ErrorCode.FORBIDDEN, ErrorCode.REQUEST_MISMATCH})
_INVALID: Final = frozenset(
    {
        ErrorCode.GRAPHQL_PARSE_FAILED,
        ErrorCode.GRAPHQL_VALIDATION_FAILED,
        ErrorCode.INVALID_CRITERIA,
        ErrorCode.INVALID_CODE,
        ErrorCode.UNKNOWN_JURISDICTION,
        ErrorCode.UNKNOWN_DIMENSION,
        ErrorCode.INVALID_ARGUMENT,
        ErrorCode.QUERY_TOO_COMPLEX,
        ErrorCode.QUERY_TOO_DEEP,
        ErrorCode.TOO_MANY_ALIASES,
        ErrorCode.TOO_MANY_TOKENS,
        ErrorCode.BATCH_TOO_LARGE,
        ErrorCode.BODY_TOO_LARGE,
        ErrorCode.INTROSPECTION_DISABLED,
        ErrorCode.QUESTION_TOO_COSTLY,
        ErrorCode.NOT_FOUND,
        ErrorCode.METHOD_NOT_ALLOWED,
        ErrorCode.BAD_REQUEST,
    }
)


def error_class(code: ErrorCode | str | None) -> type[TesseraClientError]:
    """The exception class for a gateway code; the base class for a code it does not know."""
    if code in _AUTHENTICATION:
        return AuthenticationError
    if code in _PERMISSION:
        return PermissionDenied
    if code in _INVALID:
        return InvalidQuery
    if code == ErrorCode.RATE_LIMITED:
        return RateLimited
    if code is None or isinstance(code, ErrorCode):
        return Unavailable
    return TesseraClientError


def parse_code(raw: object) -> ErrorCode | str | None:
    if not isinstance(raw, str):
        return None
    try:
        return ErrorCode(raw)
    except ValueError:
        return raw  # a code newer than this client: kept as the gateway spelt it


def error_from(
    errors: Sequence[Mapping[str, Any]],
    *,
    data: Mapping[str, Any] | None = None,
    status: int | None = None,
) -> TesseraClientError:
    """The exception for a response's GraphQL errors: the first error decides its class."""
    first = errors[0] if errors else {}
    extensions = first.get("extensions")
    extensions = dict(extensions) if isinstance(extensions, Mapping) else {}
    code = parse_code(extensions.pop("code", None))
    message = str(first.get("message") or "the gateway refused the question")
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more errors)"
    return error_class(code)(
        message, code=code, details=extensions, errors=errors, data=data, status=status
    )
