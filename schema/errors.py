"""Stable error codes. They appear as GraphQL `extensions.code` and in node error bodies;
clients may switch on them, so a code is never renamed or reused."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    # researcher-facing (GraphQL)
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    INVALID_CRITERIA = "INVALID_CRITERIA"
    INVALID_CODE = "INVALID_CODE"
    UNKNOWN_JURISDICTION = "UNKNOWN_JURISDICTION"
    UNKNOWN_DIMENSION = "UNKNOWN_DIMENSION"
    REQUEST_MISMATCH = "REQUEST_MISMATCH"
    NO_NODE_ANSWERED = "NO_NODE_ANSWERED"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    QUORUM_NOT_MET = "QUORUM_NOT_MET"
    INTERNAL = "INTERNAL"
    # both sides: the audit entry could not be written, so the answer is withheld
    AUDIT_UNAVAILABLE = "AUDIT_UNAVAILABLE"
    # researcher tokens: each refusal has its own code; all of them mean "get a new token"
    TOKEN_MALFORMED = "TOKEN_MALFORMED"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOKEN_NOT_YET_VALID = "TOKEN_NOT_YET_VALID"
    TOKEN_WRONG_AUDIENCE = "TOKEN_WRONG_AUDIENCE"
    TOKEN_UNTRUSTED_ISSUER = "TOKEN_UNTRUSTED_ISSUER"
    TOKEN_UNKNOWN_KEY = "TOKEN_UNKNOWN_KEY"
    TOKEN_MISSING_CLAIM = "TOKEN_MISSING_CLAIM"
    TOKEN_INVALID_CLAIM = "TOKEN_INVALID_CLAIM"
    TOKEN_ALGORITHM_NOT_ALLOWED = "TOKEN_ALGORITHM_NOT_ALLOWED"
    TOKEN_WRONG_TYPE = "TOKEN_WRONG_TYPE"
    TOKEN_BAD_SIGNATURE = "TOKEN_BAD_SIGNATURE"
    # permits (X-Tessera-Permit): more than the gateway reads in one request
    TOO_MANY_PERMITS = "TOO_MANY_PERMITS"
    # limits on what one caller may ask (GraphQL and HTTP)
    RATE_LIMITED = "RATE_LIMITED"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    QUERY_TOO_DEEP = "QUERY_TOO_DEEP"
    TOO_MANY_ALIASES = "TOO_MANY_ALIASES"
    TOO_MANY_TOKENS = "TOO_MANY_TOKENS"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    # more cohort questions in flight at once than a researcher's (or an application's) share
    TOO_MANY_IN_FLIGHT = "TOO_MANY_IN_FLIGHT"
    # the gateway has as many questions fanning out and waiting to as it holds, whoever asks
    GATEWAY_BUSY = "GATEWAY_BUSY"
    INTROSPECTION_DISABLED = "INTROSPECTION_DISABLED"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"
    # node-facing (gateway → connector)
    BAD_SIGNATURE = "BAD_SIGNATURE"
    BAD_REQUEST = "BAD_REQUEST"
    WRONG_NODE = "WRONG_NODE"
    BODY_TOO_LARGE = "BODY_TOO_LARGE"
    # both sides: the request line or a header is over aiohttp's parser limit (8190 bytes)
    HEADER_TOO_LARGE = "HEADER_TOO_LARGE"
    BACKEND_FAILED = "BACKEND_FAILED"
    QUERY_TIMEOUT = "QUERY_TIMEOUT"
    # gateway-side, about one node (in a node result's `error`)
    CIRCUIT_OPEN = "CIRCUIT_OPEN"
    NODE_BUSY = "NODE_BUSY"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    REQUEST_EXPIRED = "REQUEST_EXPIRED"
    BODY_MISMATCH = "BODY_MISMATCH"
    REPLAYED_REQUEST = "REPLAYED_REQUEST"
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
    APPROVAL_INVALID = "APPROVAL_INVALID"
    APPROVAL_MISMATCH = "APPROVAL_MISMATCH"
    # The node's privacy ledger or answer store cannot be read or written: nothing is
    # answered without them.
    LEDGER_UNAVAILABLE = "LEDGER_UNAVAILABLE"
    # A question whose tables cost more than the privacy budget per person: nobody could be
    # counted in it (a matter of its form, never of the data).
    QUESTION_TOO_COSTLY = "QUESTION_TOO_COSTLY"
    # A node will not take part in a pooled round as asked: it is not a participant, a
    # participant is not in its pooling registry, the round has fewer nodes than its policy's
    # minimum, less noise than its own, a nonce used before, or the node does not pool. The
    # message says which; the gateway re-runs the round without the node.
    POOL_REFUSED = "POOL_REFUSED"


class ConfigError(ValueError):
    """A configuration a command or a service cannot run with: a file, a key, a setting. The
    message names the file or variable, the field and what to do about it; `tessera` prints
    it as one line and exits 2, without a traceback (`tessera.cli`)."""


class SettingsError(ConfigError):
    """A service's setting is missing or malformed; the message names the environment
    variable."""


class TesseraError(Exception):
    """An error with a stable code and structured, safe-to-show details.

    `message` and `details` are shown to the caller: never put SQL, paths, stack traces or
    cell values in them.
    """

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: ErrorCode | None = None, **details: Any) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.details = details

    @property
    def extensions(self) -> dict[str, Any]:
        return {"code": self.code.value, **self.details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value}: {self.message})"
