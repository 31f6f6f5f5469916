"""The strawberry schema: types, the error-coding hook, caches and limits."""

from __future__ import annotations

from typing import Final

import strawberry
from graphql import GraphQLError
from opentelemetry.trace import TracerProvider
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from gateway.graphql.errors import coded, log_error
from gateway.graphql.limits import MAX_TOKENS, validation_rules
from gateway.graphql.operations import OneOperation
from gateway.graphql.resolvers import Query
from gateway.graphql.tracing import operation_span

# Parsed and validated documents are cached by query text; researchers mostly re-send the
# same few queries with other variables.
CACHE_SIZE: Final = 512


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


def build_schema(
    *,
    tracer_provider: TracerProvider | None = None,
    introspection: bool = False,
    max_batch: int = 1,
) -> GatewaySchema:
    """The gateway's schema. The validation rules are the same class objects for every
    schema with the same `introspection`, so the shared validation cache keeps hitting."""
    rules = validation_rules(introspection=introspection)
    return GatewaySchema(
        query=Query,
        config=StrawberryConfig(
            batching_config={"max_operations": max_batch} if max_batch > 1 else None
        ),
        extensions=[
            operation_span(tracer_provider),
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            lambda: ParserCache(maxsize=CACHE_SIZE),
            lambda: AddValidationRules(rules),
            lambda: ValidationCache(maxsize=CACHE_SIZE),
            OneOperation,
        ],
    )


def sdl() -> str:
    """The schema in SDL, as published in `schema/schema.graphql`."""
    return build_schema().as_str() + "\n"
