"""Every GraphQL error leaves with a stable `extensions.code` (`schema.errors.ErrorCode`).

- a `TesseraError` raised anywhere keeps its code, message and details;
- a syntax error in the document is GRAPHQL_PARSE_FAILED;
- an error about the document or its variables (unknown field, unknown enum value such as a
  vocabulary or dimension, wrong variable type) is GRAPHQL_VALIDATION_FAILED;
- anything else is a bug: INTERNAL, with a fixed message. It is logged here with its type and
  stack, never its message, which may hold values.
"""

from __future__ import annotations

import logging
import traceback
from typing import Final

from graphql import GraphQLError, GraphQLSyntaxError

from schema.errors import ErrorCode, TesseraError

log = logging.getLogger(__name__)

INTERNAL_MESSAGE: Final = "Internal error."


def coded(error: GraphQLError) -> GraphQLError:
    """`error` as the client may see it, with a stable code. Idempotent."""
    original = error.original_error
    if isinstance(original, TesseraError):
        return _replace(error, original.message, original.extensions)
    if error.extensions and "code" in error.extensions and original is None:
        return error
    if isinstance(error, GraphQLSyntaxError) or isinstance(original, GraphQLSyntaxError):
        return _replace(error, error.message, {"code": ErrorCode.GRAPHQL_PARSE_FAILED.value})
    # Execution errors carry a path; document and variable errors point at nodes of the
    # document instead, or at nothing when the operation itself cannot be chosen.
    about_document = error.path is None and (original is None or error.nodes is not None)
    if about_document:
        return _replace(error, error.message, {"code": ErrorCode.GRAPHQL_VALIDATION_FAILED.value})
    return _replace(error, INTERNAL_MESSAGE, {"code": ErrorCode.INTERNAL.value})


def log_error(error: GraphQLError) -> None:
    original = error.original_error
    where = ".".join(str(p) for p in error.path) if error.path else "-"
    if isinstance(original, TesseraError):
        log.info("graphql %s at %s", original.code.value, where)
    elif original is not None and not isinstance(original, GraphQLError):
        stack = "".join(traceback.format_tb(original.__traceback__))
        log.error("unexpected %s at %s\n%s", type(original).__name__, where, stack)


def _replace(error: GraphQLError, message: str, extensions: dict[str, object]) -> GraphQLError:
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )
