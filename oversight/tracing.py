"""The tracer provider of a service process, built from the standard `OTEL_*` variables.

Export: OTLP over HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (or `OTEL_TRACES_EXPORTER=otlp`), through a batch
processor off the request path (`OTEL_BSP_*`); `OTEL_TRACES_EXPORTER=console` prints spans,
`none` exports nothing; nothing is exported when none is set. Spans and trace ids exist in
every case, so that the researcher gets a trace id and nodes a `traceparent`.
`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_TRACES_SAMPLER` work as usual.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Final

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

log = logging.getLogger(__name__)

EXPORTER_VARIABLE: Final = "OTEL_TRACES_EXPORTER"
ENDPOINT_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracer_provider_from_env(
    default_service_name: str, environ: Mapping[str, str] | None = None
) -> TracerProvider:
    """A tracer provider for one service process, configured by the `OTEL_*` variables."""
    env = os.environ if environ is None else environ
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "unknown_service")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service_name}))
    provider = TracerProvider(resource=resource)
    exporter = _exporter(env)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporter(env: Mapping[str, str]) -> SpanExporter | None:
    choice = env.get(EXPORTER_VARIABLE, "").strip().lower()
    endpoint = any(env.get(v, "").strip() for v in ENDPOINT_VARIABLES)
    if choice == "console":
        return ConsoleSpanExporter()
    if choice == "otlp" or (choice == "" and endpoint):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if choice not in ("", "none", "otlp"):
        log.warning(
            "%s=%s is not supported (otlp, console, none): not exporting", EXPORTER_VARIABLE, choice
        )
    return None
