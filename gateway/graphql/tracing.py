"""One OpenTelemetry span per GraphQL operation, current while it runs, so that resolvers can
report the trace id and node requests carry it in `traceparent`. The span continues the
caller's trace when the request carries a W3C `traceparent`.

Deliberately not strawberry's OpenTelemetry extension: its per-resolver hook makes every
resolver async. Exporters are configured by the process (`oversight.tracing`), not here. The
operation name is not recorded: the researcher chose it, and researchers' text stays out of
traces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from opentelemetry import trace
from opentelemetry.trace import SpanKind, TracerProvider
from strawberry.extensions import SchemaExtension

from schema import telemetry as otel
from schema.telemetry import current_trace_id

__all__ = ["SPAN_NAME", "TRACER_NAME", "current_trace_id", "operation_span"]

TRACER_NAME: Final = "tessera.gateway"
SPAN_NAME: Final = otel.GRAPHQL_OPERATION


def operation_span(provider: TracerProvider | None = None) -> Callable[[], SchemaExtension]:
    tracer = trace.get_tracer(TRACER_NAME, tracer_provider=provider)

    class OperationSpan(SchemaExtension):
        def on_operation(self) -> Iterator[None]:
            parent = getattr(self.execution_context.context, "trace_parent", None)
            with tracer.start_as_current_span(
                SPAN_NAME,
                context=parent,
                kind=SpanKind.SERVER,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                yield
                context = self.execution_context
                errors = context.result.errors if context.result else None
                if errors:
                    codes = sorted({str((e.extensions or {}).get("code")) for e in errors})
                    span.set_attribute(otel.ERROR_CODES, codes)

    return OperationSpan
