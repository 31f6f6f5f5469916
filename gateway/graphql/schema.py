"""The strawberry schema: types, the error-coding hook, caches and limits."""

from __future__ import annotations

from typing import Final

import strawberry
from graphql import GraphQLError
from opentelemetry.trace import TracerProvider
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator
from strawberry.types import ExecutionContext

from gateway.graphql.errors import coded, log_error
from gateway.graphql.resolvers import Query
from gateway.graphql.tracing import operation_span

# Parsed and validated documents are cached by query text; researchers mostly re-send the
# same few queries with other variables.
CACHE_SIZE: Final = 512
# Limits on one document: every `cohort` alias is a fan-out to every node.
MAX_TOKENS: Final = 4000
MAX_ALIASES: Final = 16
# The rule class is made once: `MaxAliasesLimiter` makes a new one per request, and the
# validation cache, keyed by the rules, would then never hit.
_MAX_ALIASES_RULE: Final = create_validator(MAX_ALIASES)


class GatewaySchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Strawberry hands this hook the very list that becomes the response's `errors`, on
        # every path (parse, validation, execution, a failing extension), before anything is
        # serialised: rewriting it in place is the one spot where every error gets its code.
        for i, error in enumerate(errors):
            log_error(error)
            errors[i] = coded(error)


def build_schema(*, tracer_provider: TracerProvider | None = None) -> GatewaySchema:
    return GatewaySchema(
        query=Query,
        extensions=[
            operation_span(tracer_provider),
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            lambda: ParserCache(maxsize=CACHE_SIZE),
            lambda: AddValidationRules([_MAX_ALIASES_RULE]),
            lambda: ValidationCache(maxsize=CACHE_SIZE),
        ],
    )


def sdl() -> str:
    """The schema in SDL, as published in `schema/schema.graphql`."""
    return build_schema().as_str() + "\n"
