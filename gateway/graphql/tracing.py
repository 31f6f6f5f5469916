"""One OpenTelemetry span per GraphQL operation, current while it runs, so that resolvers can
report the trace id and node requests carry it in `traceparent`.

Deliberately not strawberry's OpenTelemetry extension: its per-resolver hook makes every
resolver async. Exporters are configured by the process, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from opentelemetry import trace
from opentelemetry.trace import SpanKind, TracerProvider
from strawberry.extensions import SchemaExtension

TRACER_NAME: Final = "tessera.gateway"
SPAN_NAME: Final = "graphql.operation"


def operation_span(provider: TracerProvider | None = None) -> Callable[[], SchemaExtension]:
    tracer = trace.get_tracer(TRACER_NAME, tracer_provider=provider)

    class OperationSpan(SchemaExtension):
        def on_operation(self) -> Iterator[None]:
            with tracer.start_as_current_span(SPAN_NAME, kind=SpanKind.SERVER) as span:
                yield
                context = self.execution_context
                if context.operation_name:
                    span.set_attribute("graphql.operation.name", context.operation_name)
                errors = context.result.errors if context.result else None
                if errors:
                    codes = sorted({str((e.extensions or {}).get("code")) for e in errors})
                    span.set_attribute("tessera.error_codes", codes)

    return OperationSpan


def current_trace_id() -> str | None:
    """The current trace id as 32 hex digits, or None outside any trace."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None
