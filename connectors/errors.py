"""The connector's errors: each a `TesseraError` with a stable code and the HTTP status the
service answers it with. Messages are shown to the gateway: never SQL, paths or values."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from typing import Final

from schema.errors import ErrorCode, TesseraError

log = logging.getLogger(__name__)

HTTP_STATUS: Final[dict[ErrorCode, int]] = {
    ErrorCode.BAD_SIGNATURE: 401,
    ErrorCode.UNKNOWN_KEY: 401,
    ErrorCode.REQUEST_EXPIRED: 401,
    ErrorCode.BODY_MISMATCH: 401,
    ErrorCode.REPLAYED_REQUEST: 401,
    ErrorCode.APPROVAL_REQUIRED: 403,
    ErrorCode.APPROVAL_INVALID: 403,
    ErrorCode.APPROVAL_MISMATCH: 403,
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.WRONG_NODE: 400,
    ErrorCode.BODY_TOO_LARGE: 413,
    ErrorCode.BACKEND_FAILED: 503,
    ErrorCode.AUDIT_UNAVAILABLE: 503,
    ErrorCode.QUERY_TIMEOUT: 503,
    ErrorCode.TEMPORARILY_UNAVAILABLE: 503,
    ErrorCode.LEDGER_UNAVAILABLE: 503,
    ErrorCode.QUESTION_TOO_COSTLY: 400,
    ErrorCode.POOL_REFUSED: 400,
}


def http_status(error: TesseraError) -> int:
    return HTTP_STATUS.get(error.code, 500)


class NodeRefusal(TesseraError):
    """A request refused before anything is computed; the code says which check failed. (A
    request token that does not verify is a `trust.request_token.RequestRefused`.)"""


class BadRequest(TesseraError):
    code = ErrorCode.BAD_REQUEST


class WrongNode(TesseraError):
    code = ErrorCode.WRONG_NODE


class BodyTooLarge(TesseraError):
    code = ErrorCode.BODY_TOO_LARGE


class BackendFailed(TesseraError):
    code = ErrorCode.BACKEND_FAILED


class BackendNotReady(BackendFailed):
    """The database answers but cannot serve queries yet (e.g. Tessera tables missing)."""


class QueryTimeout(TesseraError):
    """The query ran past the node's own time limit and was interrupted."""

    code = ErrorCode.QUERY_TIMEOUT


class LedgerUnavailable(TesseraError):
    """The privacy ledger or the answer store failed: the node answers nothing."""

    code = ErrorCode.LEDGER_UNAVAILABLE


class QuestionTooCostly(TesseraError):
    code = ErrorCode.QUESTION_TOO_COSTLY


class PoolRefused(TesseraError):
    """A pooled round this node will not take part in, for its form (never its data)."""

    code = ErrorCode.POOL_REFUSED


@contextlib.contextmanager
def ledger_failures(what: str) -> Iterator[None]:
    """Map the state files' own failures (SQLite, the file system) to LEDGER_UNAVAILABLE,
    once, at the ledger's and the answer store's boundary. The message names no path."""
    try:
        yield
    except (sqlite3.Error, OSError, ValueError, BufferError) as error:
        log.error("the %s failed: %s", what, type(error).__name__)
        raise LedgerUnavailable(f"the node's {what} is unavailable") from None
