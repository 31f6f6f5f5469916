"""Tracing, named in one place: span names, attribute keys and the step timer both services
use (the OpenTelemetry API only; `oversight.tracing` builds the provider that exports spans).

Attributes say what happened, never what was counted: ids, statuses, rule ids, numbers of
suppressed cells, versions, fingerprints. Never a cell value, an unprotected count, SQL text
with values, an exception message or anything the researcher typed (not even the GraphQL
operation name). Exceptions are not recorded on spans for the same reason; a failed step gets
an error status and its stable error code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

from opentelemetry.context import Context
from opentelemetry.trace import (
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    format_trace_id,
    get_current_span,
)
from opentelemetry.util.types import AttributeValue

from schema.audit.entry import StepTiming
from schema.errors import ErrorCode, TesseraError

# -- span names -------------------------------------------------------------------------------
GRAPHQL_OPERATION: Final = "graphql.operation"
GATEWAY_COHORT: Final = "gateway.cohort"
GATEWAY_NODE_CALL: Final = "gateway.node_call"
CONNECTOR_QUERY: Final = "connector.query"
AUDIT_WRITE: Final = "audit.write"

# -- attribute keys ---------------------------------------------------------------------------
QUERY_ID: Final = "tessera.query_id"
APPROVAL_ID: Final = "tessera.approval_id"
PURPOSE: Final = "tessera.purpose"
JURISDICTION: Final = "tessera.jurisdiction"
JURISDICTIONS: Final = "tessera.jurisdictions"
DENIED_JURISDICTIONS: Final = "tessera.jurisdictions.denied"
NODE_STATUS: Final = "tessera.node.status"
DECISION: Final = "tessera.decision"
RULES_FIRED: Final = "tessera.rules_fired"
CELLS_SUPPRESSED: Final = "tessera.cells_suppressed"
OPTOUT_REGISTER_VERSION: Final = "tessera.optout_register_version"
SQL_FINGERPRINT: Final = "tessera.sql.fingerprint"
SQL_STATEMENTS: Final = "tessera.sql.statements"
ERROR_CODE: Final = "tessera.error_code"
ERROR_CODES: Final = "tessera.error_codes"
AUDIT_CHAIN: Final = "tessera.audit.chain"
AUDIT_SEQ: Final = "tessera.audit.seq"


def current_trace_id() -> str | None:
    """The current trace id as 32 hex digits, or None outside any trace."""
    context = get_current_span().get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else None


def fail(span: Span, error: BaseException) -> None:
    """Mark `span` failed with the error's stable code only (never its message)."""
    code = error.code if isinstance(error, TesseraError) else ErrorCode.INTERNAL
    span.set_status(Status(StatusCode.ERROR))
    span.set_attribute(ERROR_CODE, code.value)


@contextmanager
def traced(
    tracer: Tracer,
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
    context: Context | None = None,
) -> Iterator[Span]:
    """A current span that records a failure by its code, never by its message; a child of
    `context` when given, of the current span otherwise."""
    with tracer.start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as error:
            fail(span, error)
            raise


@dataclass
class Timeline:
    """The steps of one query, each a span named `{prefix}.{step}` and a timing for the audit
    entry (`steps`), in the order they ended."""

    tracer: Tracer
    prefix: str
    steps: list[StepTiming] = field(default_factory=list)

    @contextmanager
    def step(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None
    ) -> Iterator[Span]:
        started = time.perf_counter_ns()
        try:
            with traced(self.tracer, f"{self.prefix}.{name}", attributes=attributes) as span:
                yield span
        finally:
            self.steps.append(
                StepTiming(name=name, elapsed_us=(time.perf_counter_ns() - started) // 1000)
            )
