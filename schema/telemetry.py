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
from collections.abc import Awaitable, Iterator, Mapping
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

from schema.audit.entry import AuditEntry, StepTiming
from schema.errors import ErrorCode, TesseraError

# -- span names -------------------------------------------------------------------------------
GRAPHQL_OPERATION: Final = "graphql.operation"
GATEWAY_COHORT: Final = "gateway.cohort"
GATEWAY_NODE_CALL: Final = "gateway.node_call"
CONNECTOR_QUERY: Final = "connector.query"
# -- event names (on the span of the query they belong to) ---------------------------------
# Each step of `Timeline` is an event `{prefix}.{step}`; writing the audit entry is this one.
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
# A step event's duration in microseconds (the audit entry's timing of the same step).
STEP_ELAPSED_US: Final = "tessera.step.elapsed_us"


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


class StepEvent:
    """What one step records: the attributes of its event on the query's span."""

    __slots__ = ("attributes",)

    def __init__(self, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        self.attributes: dict[str, AttributeValue] = dict(attributes or {})

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self.attributes.update(attributes)


@dataclass
class Timeline:
    """The steps of one query, each an event named `{prefix}.{step}` on the query's span (the
    span current when the step starts) with its duration (`STEP_ELAPSED_US`), and a timing for
    the audit entry (`steps`), in the order they ended.

    Events rather than spans: a span per step cost a context switch, a processor call and an
    export record each (~15 spans per gateway question, ~13 per node answer), and kept its
    empty event and link deques open while the query waited; the query's own span and each
    node call's client span are the ones operators follow. A failed step's event carries its
    error code (never the message); the query's span takes the error status."""

    tracer: Tracer
    prefix: str
    steps: list[StepTiming] = field(default_factory=list)

    @contextmanager
    def step(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None
    ) -> Iterator[StepEvent]:
        span = get_current_span()
        event = StepEvent(attributes)
        started = time.perf_counter_ns()
        try:
            yield event
        except BaseException as error:
            code = error.code if isinstance(error, TesseraError) else ErrorCode.INTERNAL
            event.attributes[ERROR_CODE] = code.value
            raise
        finally:
            elapsed_us = (time.perf_counter_ns() - started) // 1000
            self.steps.append(StepTiming(name=name, elapsed_us=elapsed_us))
            event.attributes[STEP_ELAPSED_US] = elapsed_us
            span.add_event(f"{self.prefix}.{name}", event.attributes)


async def audit_written(write: Awaitable[AuditEntry]) -> AuditEntry:
    """Await an audit entry's write and record it as an `AUDIT_WRITE` event on the current span
    (its chain, sequence number and duration), or the failure's code."""
    span = get_current_span()
    attributes: dict[str, AttributeValue] = {}
    started = time.perf_counter_ns()
    try:
        entry = await write
        attributes |= {AUDIT_CHAIN: entry.chain, AUDIT_SEQ: entry.seq}
        return entry
    except BaseException as error:
        code = error.code if isinstance(error, TesseraError) else ErrorCode.INTERNAL
        attributes[ERROR_CODE] = code.value
        raise
    finally:
        attributes[STEP_ELAPSED_US] = (time.perf_counter_ns() - started) // 1000
        span.add_event(AUDIT_WRITE, attributes)
