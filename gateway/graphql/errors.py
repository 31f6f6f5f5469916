"""Every GraphQL error leaves with a stable `extensions.code` (`schema.errors.ErrorCode`).

- a `TesseraError` raised anywhere keeps its code, message and details;
- a syntax error in the document is GRAPHQL_PARSE_FAILED (TOO_MANY_TOKENS past the limit);
- an error about the document or its variables (unknown field, unknown enum value such as a
  vocabulary or dimension, wrong variable type) is GRAPHQL_VALIDATION_FAILED, unless one of
  our own rules gave it a code (`gateway.graphql.limits`);
- anything else is a bug: INTERNAL, with a fixed message. It is logged here with its type and
  stack, never its message, which may hold values.

graphql-core's messages quote the offending values and suggest schema names ("Did you
mean"); both are cut (`scrub`), so that an error never carries a value and says nothing about
the schema that introspection, when disabled, would not.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Final

from graphql import GraphQLError, GraphQLSyntaxError

from schema.errors import ErrorCode, TesseraError

log = logging.getLogger(__name__)

INTERNAL_MESSAGE: Final = "Internal error."
MAX_MESSAGE_CHARS: Final = 300
_TOO_MANY_TOKENS: Final = "Document contains more than"

# graphql-core's phrases that go on to quote a value, each cut before the value.
_CUTS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (
        re.compile(
            r"(Variable '\$\w+') (?:got|has) invalid (?:default )?value( at [\w.\[\]]+)?.*", re.S
        ),
        r"\1 has an invalid value\2.",
    ),
    (re.compile(r"\s*Did you mean .*", re.S), ""),
    (re.compile(r",? found:? .*", re.S), "."),
    (re.compile(r" cannot represent .*", re.S), " cannot represent this value."),
    (re.compile(r"Value .* does not exist in ('\w+') enum.*", re.S), r"No such value in \1 enum."),
    (re.compile(r"(Unexpected|Invalid) (character|String|BlockString)\b.*", re.S), r"\1 \2."),
)
# What may stay quoted: names from the schema or the document, never values.
_NAME: Final = re.compile(
    r"\$?[_A-Za-z][_0-9A-Za-z]*(?:\.[_A-Za-z][_0-9A-Za-z]*)?!?"
    r"|\[[_A-Za-z][_0-9A-Za-z]*!?\]!?"
)
_SINGLE_QUOTED: Final = re.compile(r"'([^']*)'")
_DOUBLE_QUOTED: Final = re.compile(r'"[^"]*"')
_SAFE_MESSAGE: Final = re.compile(r"[\x20-\x7e…]*")
GENERIC_MESSAGE: Final = "The document or its variables are invalid."


def scrub(message: str) -> str:
    """A graphql-core message without the values it quotes and without suggestions."""
    for pattern, replacement in _CUTS:
        message = pattern.sub(replacement, message)
    message = _SINGLE_QUOTED.sub(
        lambda m: m.group(0) if _NAME.fullmatch(m.group(1)) else "'…'", message
    )
    message = _DOUBLE_QUOTED.sub('"…"', message)
    if not _SAFE_MESSAGE.fullmatch(message) or "{" in message:
        return GENERIC_MESSAGE
    return message[:MAX_MESSAGE_CHARS]


def coded(error: GraphQLError) -> GraphQLError:
    """`error` as the client may see it, with a stable code. Idempotent."""
    original = error.original_error
    if isinstance(original, TesseraError):
        return _replace(error, original.message, original.extensions)
    if error.extensions and "code" in error.extensions and original is None:
        return error
    if isinstance(error, GraphQLSyntaxError) or isinstance(original, GraphQLSyntaxError):
        if _TOO_MANY_TOKENS in error.message:
            code = ErrorCode.TOO_MANY_TOKENS
            return _replace(error, "the document has too many tokens", {"code": code.value})
        return _replace(error, scrub(error.message), {"code": ErrorCode.GRAPHQL_PARSE_FAILED.value})
    # Execution errors carry a path; document and variable errors point at nodes of the
    # document instead, or at nothing when the operation itself cannot be chosen.
    about_document = error.path is None and (original is None or error.nodes is not None)
    if about_document:
        return _replace(
            error, scrub(error.message), {"code": ErrorCode.GRAPHQL_VALIDATION_FAILED.value}
        )
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
