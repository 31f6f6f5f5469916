"""What the gateway records about one query, for its audit entry and its spans.

A `QueryTrail` follows one `cohort` question: each step is an event of the question's span and a
timing, and what the steps learn (principal, plan, decisions, the permit each jurisdiction was
decided on) is kept for the entry. The entry is written by `answered` before the resolver
returns the answer, or by `refused` before the error leaves; either raises AUDIT_UNAVAILABLE
when the entry cannot be written, and the answer is withheld."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry.trace import Span, Tracer
from opentelemetry.util.types import AttributeValue

from gateway.answer_decoding import decode_response
from gateway.auth import Principal
from gateway.combine import Combined
from gateway.nodes import NodeOutcome
from gateway.permits import Permit
from gateway.planner import Plan
from oversight.audit.log import AuditLog
from policies.reasons import AccessDecision
from schema import telemetry as otel
from schema.approval import ApplicantId
from schema.audit.entry import (
    AuditRecord,
    Decision,
    NodeDecision,
    NodeStep,
    released_hash,
    utc_now,
)
from schema.codes import Jurisdiction, NodeStatus
from schema.errors import ErrorCode, TesseraError
from schema.result import Cell, DimensionValue, Rate, Reason, Summary, Value

STEP_PREFIX = "gateway"
# What an audit record's text fields hold at most (`schema.model.Contract`).
PURPOSES_MAX = 256


def new_query_id() -> str:
    return str(uuid.uuid4())


@dataclass
class QueryTrail:
    log: AuditLog
    tracer: Tracer
    service: str
    query_id: str = field(default_factory=new_query_id)
    trace_id: str | None = None
    principal: Principal | None = None
    plan: Plan | None = None
    decisions: Mapping[Jurisdiction, AccessDecision] | None = None
    # The permit each jurisdiction's part was decided on (allowed or not), in the plan's order.
    permits: Mapping[Jurisdiction, Permit] = field(default_factory=dict)
    # Each asked node's step, as the fan-out recorded it on the node's span.
    node_steps: dict[Jurisdiction, NodeStep] = field(default_factory=dict)
    timeline: otel.Timeline = field(init=False)

    def __post_init__(self) -> None:
        self.timeline = otel.Timeline(self.tracer, STEP_PREFIX)

    @contextmanager
    def step(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None
    ) -> Iterator[otel.StepEvent]:
        with self.timeline.step(name, attributes) as event:
            yield event

    def query_attributes(self) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {otel.QUERY_ID: self.query_id}
        if self.plan is not None:
            attributes[otel.APPROVAL_ID] = self.plan.request_id
            attributes[otel.JURISDICTIONS] = [j.value for j in self.plan.jurisdictions]
        if (purpose := self.purpose()) is not None:
            attributes[otel.PURPOSE] = purpose
        return attributes

    def purpose(self) -> str | None:
        """The permits' purpose (their purposes, space-separated, if they differ)."""
        purposes = sorted({p.approval.purpose for p in self.permits.values()})
        return " ".join(purposes)[:PURPOSES_MAX] if purposes else None

    def applicant(self) -> ApplicantId | None:
        """The researcher as authenticated, and the organisation the permits name when they
        all name the same one (each permit's own is in its record)."""
        if self.principal is None:
            return None
        organisations = {p.approval.applicant for p in self.permits.values()}
        organisation = organisations.pop() if len(organisations) == 1 else None
        return ApplicantId(researcher=self.principal.subject, organisation=organisation or None)

    async def answered(
        self, outcomes: Sequence[NodeOutcome], combined: Combined, span: Span
    ) -> None:
        # Both set by the steps that ran before an answer exists.
        assert self.plan is not None
        assert self.decisions is not None
        released = released_values(combined)
        nodes = [
            self.node_steps.get(o.jurisdiction) or node_step(o, self.decisions[o.jurisdiction])
            for o in outcomes
        ]
        # Every rule that fired anywhere: the policy's, each node's, the gateway's.
        rules = sorted(
            {r.rule for v in released for r in v.reasons} | {r for n in nodes for r in n.rules}
        )
        suppressed = sum(v.value is None for v in released)
        decision, error_code = outcome_of(outcomes)
        span.set_attributes(
            {
                **self.query_attributes(),
                otel.DECISION: decision.value,
                otel.RULES_FIRED: rules,
                otel.CELLS_SUPPRESSED: suppressed,
            }
        )
        await self._write(
            decision=decision,
            error_code=error_code,
            nodes=nodes,
            rules=rules,
            cells_suppressed=suppressed,
            result_hash=released_hash(released_result(self.plan, combined)),
        )

    async def fitted(self, released: Mapping[str, object], span: Span) -> None:
        """A regression's answer (`gateway.regression`): its fit, hashed as released."""
        span.set_attributes({**self.query_attributes(), otel.DECISION: Decision.ANSWERED.value})
        await self._write(decision=Decision.ANSWERED, result_hash=released_hash(dict(released)))

    async def refused(self, error: Exception, span: Span) -> None:
        code = error.code if isinstance(error, TesseraError) else ErrorCode.INTERNAL
        span.set_attributes({**self.query_attributes(), otel.DECISION: Decision.REFUSED.value})
        await self._write(decision=Decision.REFUSED, error_code=code)

    async def _write(self, **outcome: object) -> None:
        principal, plan, permits = self.principal, self.plan, self.permits
        record = AuditRecord.model_validate(
            {
                "time": utc_now(),
                "service": self.service,
                "query_id": self.query_id,
                "trace_id": self.trace_id,
                "principal": principal.subject if principal else None,
                "issuer": principal.issuer if principal else None,
                "approval": plan.request_id if plan else None,
                "purpose": self.purpose(),
                "datasets": sorted({d for p in permits.values() for d in p.approval.datasets}),
                "applicant": self.applicant(),
                "permits": [permit.record(j) for j, permit in permits.items()],
                "jurisdictions": list(plan.jurisdictions) if plan else [],
                "query_hash": released_hash(plan.node_query.model_dump(mode="json"))
                if plan
                else None,
                "steps": self.timeline.steps,
                **outcome,
            }
        )
        await otel.audit_written(self.log.record(record))


def outcome_of(outcomes: Sequence[NodeOutcome]) -> tuple[Decision, ErrorCode | None]:
    """A question every jurisdiction denied accessed nothing: it is REFUSED (FORBIDDEN), not
    PARTIAL, so that the transparency register never lists it as an access."""
    if all(o.status is NodeStatus.OK for o in outcomes):
        return Decision.ANSWERED, None
    if all(o.status is NodeStatus.DENIED for o in outcomes):
        return Decision.REFUSED, ErrorCode.FORBIDDEN
    return Decision.PARTIAL, None


def node_step(outcome: NodeOutcome, decision: AccessDecision) -> NodeStep:
    response = outcome.response
    answer = outcome.answer
    if answer is None and response is not None:
        # An outcome made elsewhere than `gateway.nodes.interpret` (a test's, a round's).
        answer = decode_response(response)
    reasons: list[Reason] = list(outcome.reasons) + list(decision.reasons)
    return NodeStep(
        jurisdiction=outcome.jurisdiction,
        decision=NodeDecision.ALLOWED if decision.allowed else NodeDecision.DENIED,
        status=outcome.status,
        latency_us=_micros(outcome.latency_ms),
        node_elapsed_us=_micros(response.elapsed_ms) if response is not None else None,
        rules=sorted({r.rule for r in reasons} | (answer.rules if answer else frozenset())),
        cells_suppressed=answer.withheld if answer else 0,
        optout_register_version=response.optout_register_version if response else None,
        response_hash=answer.hash if answer else None,
        error_code=outcome.error_code,
    )


def released_values(combined: Combined) -> list[Value]:
    """Every number the answer releases (or withholds)."""
    values = [combined.count]
    values += [n.count for n in combined.by_jurisdiction if n.count is not None]
    values += [cell.count for cells in combined.tables.values() for cell in cells]
    # A summary's n (its other numbers are derived from released values and share its
    # status): pooled, per country and per cell.
    summaries = [combined.summary, *(n.summary for n in combined.by_jurisdiction)]
    summaries += [cell.summary for cells in combined.tables.values() for cell in cells]
    values += [s.n for s in summaries if s is not None]
    # A rate's events (its person-time, a float, is derived from the released days).
    rates = [combined.rate, *(n.rate for n in combined.by_jurisdiction)]
    rates += [cell.rate for cells in combined.tables.values() for cell in cells]
    values += [r.events for r in rates if r is not None]
    return values


def released_result(plan: Plan, combined: Combined) -> dict[str, object]:
    """The released answer as plain data, for its hash: everything the researcher can select
    but timings."""
    plain = _PlainCells()
    return {
        "query_id": plan.query_id,
        "reference_date": plan.reference_date.isoformat(),
        "count": combined.count.model_dump(mode="json"),
        "by_jurisdiction": [
            {
                "jurisdiction": n.jurisdiction.value,
                "status": n.status.value,
                "count": n.count.model_dump(mode="json") if n.count is not None else None,
                "reasons": [r.model_dump(mode="json") for r in n.reasons],
                "error": n.error,
                **_summary(n.summary),
                **_rate(n.rate),
            }
            for n in combined.by_jurisdiction
        ],
        "tables": [
            {
                "by": [d.value for d in by],
                "cells": [plain.cell(c) for c in cells],
                **(
                    {"quantiles": [q.model_dump(mode="json") for q in combined.quantiles[by]]}
                    if by in combined.quantiles
                    else {}
                ),
            }
            for by, cells in combined.tables.items()
        ],
        **_summary(combined.summary),
        **_rate(combined.rate),
        **_survival(combined),
    }


def _survival(combined: Combined) -> dict[str, object]:
    """A survival question's curves and tests, under their key; nothing without them."""
    if not combined.survival:
        return {}
    return {
        "survival": [c.model_dump(mode="json") for c in combined.survival],
        "log_rank": [t.model_dump(mode="json") for t in combined.log_rank],
    }


class _PlainCells:
    """Cells as plain data (`model_dump(mode="json")`, without a summary or a rate when they
    have none, as cells were before those existed), for one answer's hash. The parts cells
    share (each dimension's values, a pooled value withheld for the same reason, the reasons)
    are made plain once; a count-only cell is made without the model's serialiser."""

    def __init__(self) -> None:
        # By identity: the parts are alive as long as the answer being hashed.
        self._seen: dict[int, dict[str, object]] = {}

    def cell(self, cell: Cell) -> dict[str, object]:
        if cell.summary is None and cell.rate is None:
            count = self._value(cell.count)
            if count is not None:
                return {"dimensions": [self._part(d) for d in cell.dimensions], "count": count}
        data: dict[str, object] = cell.model_dump(mode="json")
        for key in ("summary", "rate"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    def _part(self, part: DimensionValue | Reason) -> dict[str, object]:
        plain = self._seen.get(id(part))
        if plain is None:
            plain = self._seen[id(part)] = part.model_dump(mode="json")
        return plain

    def _value(self, value: Value) -> dict[str, object] | None:
        """The value as its serialiser writes it; None for one whose floats are not floats
        (the serialiser's own rules then apply)."""
        bound, sd = value.bound, value.sd
        if not (bound is None or type(bound) is float) or not (sd is None or type(sd) is float):
            return None
        contributors = value.contributors
        return {
            "value": value.value,
            "status": value.status.value,
            "reasons": [self._part(r) for r in value.reasons],
            "bound": bound,
            "sd": sd,
            "contributors": None if contributors is None else [j.value for j in contributors],
        }


def _summary(summary: Summary | None) -> dict[str, object]:
    """A summary as plain data, under its key; nothing without one (a count-only answer
    hashes as it did before summaries existed)."""
    return {} if summary is None else {"summary": summary.model_dump(mode="json")}


def _rate(rate: Rate | None) -> dict[str, object]:
    """A rate as plain data, under its key; nothing without one."""
    return {} if rate is None else {"rate": rate.model_dump(mode="json")}


def denied(decisions: Iterable[AccessDecision]) -> list[str]:
    return [d.jurisdiction.value for d in decisions if not d.allowed]


def _micros(milliseconds: float | None) -> int | None:
    return None if milliseconds is None else max(0, round(milliseconds * 1000))
