"""`python -m bench.traced gateway serve ...`: the `tessera` command with OpenTelemetry
tracing on, as a deployment runs it: the SDK's tracer provider with a batch span processor.
Spans are exported to a sink that counts and drops them, so that the benchmark measures what
tracing costs the gateway, not an exporter's network.

Set as the global provider before the gateway starts, so every span the gateway makes (its
operation span today, and any it adds) goes through it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class DroppingExporter(SpanExporter):
    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def install() -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "tessera-gateway"}))
    provider.add_span_processor(BatchSpanProcessor(DroppingExporter()))
    trace.set_tracer_provider(provider)
    return provider


def main() -> int:
    from tessera.cli import main as tessera

    provider = install()
    try:
        return tessera(sys.argv[1:])
    finally:
        provider.shutdown()


if __name__ == "__main__":
    sys.exit(main())
