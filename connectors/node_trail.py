"""What a connector records about one query, for its audit entry and its spans.

A `NodeTrail` follows one verified request through the pipeline: each step is an event of its
span and a timing; the entry is written by `answered` before the answer is sent, or by `refused`
before the error is. A request whose signature does not verify is not recorded (there is no
caller to record); it is refused before anything runs.

Who asked and for which purpose come from the permit the node verified itself against its
own HDAB's keys: the applicant (researcher and organisation) and the permit (issuer, data
request, application) as that permit names them. A request refused before its permit
verified records the permit as the gateway forwarded it (the `caller` is the gateway key
that signed the request, verified here). The data request id comes from the signed body.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

from connectors.approval import VerifiedApproval
from oversight.audit.log import AuditLog
from schema import telemetry as otel
from schema.approval import APPROVAL_CLAIM
from schema.audit.entry import AuditRecord, Decision, PermitRecord, released_hash, utc_now
from schema.codes import Jurisdiction
from schema.errors import ErrorCode, TesseraError
from schema.wire import NodeRequest, NodeResponse

STEP_PREFIX = "connector"
MAX_CLAIM_LENGTH = 256


@dataclass(frozen=True, slots=True)
class Forwarded:
    """The researcher as named in the approval token the gateway forwarded."""

    principal: str | None = None
    issuer: str | None = None
    purpose: str | None = None
    datasets: tuple[str, ...] = ()

    @classmethod
    def of(cls, token: str | None) -> Forwarded:
        if not token:
            return cls()
        try:
            # Not verified here: the gateway did, and this only names who it vouched for.
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return cls()
        approval = claims.get(APPROVAL_CLAIM)
        approval = approval if isinstance(approval, dict) else {}
        datasets = approval.get("datasets")
        return cls(
            principal=_text(claims.get("sub")),
            issuer=_text(claims.get("iss")),
            purpose=_text(approval.get("purpose")),
            datasets=tuple(d for d in datasets if _text(d))[:32]
            if isinstance(datasets, list)
            else (),
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_CLAIM_LENGTH else None


@dataclass
class NodeTrail:
    log: AuditLog
    tracer: Tracer
    service: str
    jurisdiction: Jurisdiction
    caller: str | None = None
    forwarded: Forwarded = field(default_factory=Forwarded)
    # The permit as this node verified it; None until (and unless) it verified.
    approved: VerifiedApproval | None = None
    request: NodeRequest | None = None
    sql_fingerprint: str | None = None
    optout_register_version: str | None = None
    timeline: otel.Timeline = field(init=False)

    def __post_init__(self) -> None:
        self.timeline = otel.Timeline(self.tracer, STEP_PREFIX)

    @contextmanager
    def query_span(self, trace_parent: Context | None) -> Iterator[Span]:
        """The node's server span, continuing the gateway's trace."""
        with otel.traced(
            self.tracer,
            otel.CONNECTOR_QUERY,
            kind=SpanKind.SERVER,
            attributes={otel.JURISDICTION: self.jurisdiction.value},
            context=trace_parent,
        ) as span:
            yield span

    @contextmanager
    def step(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None
    ) -> Iterator[otel.StepEvent]:
        with self.timeline.step(name, attributes) as event:
            yield event

    def query_attributes(self) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {}
        if self.request is not None:
            attributes[otel.QUERY_ID] = self.request.query_id
            attributes[otel.APPROVAL_ID] = self.request.request_id
        purpose = self.approved.approval.purpose if self.approved else self.forwarded.purpose
        if purpose is not None:
            attributes[otel.PURPOSE] = purpose
        if self.sql_fingerprint is not None:
            attributes[otel.SQL_FINGERPRINT] = self.sql_fingerprint
        if self.optout_register_version is not None:
            attributes[otel.OPTOUT_REGISTER_VERSION] = self.optout_register_version
        return attributes

    async def answered(self, response: NodeResponse, span: Span) -> None:
        values = [v for table in response.tables for v in table.values()]
        rules = sorted(
            {r.rule for v in values for r in v.reasons} | {r.rule for r in response.reasons}
        )
        suppressed = sum(v.value is None for v in values)
        span.set_attributes(
            {
                **self.query_attributes(),
                otel.DECISION: Decision.ANSWERED.value,
                otel.RULES_FIRED: rules,
                otel.CELLS_SUPPRESSED: suppressed,
            }
        )
        await self._write(
            decision=Decision.ANSWERED,
            rules=rules,
            cells_suppressed=suppressed,
            # The gateway records the same hash of this answer (`NodeStep.response_hash`).
            result_hash=released_hash(response.model_dump(mode="json")),
        )

    async def refused(self, error: Exception, span: Span) -> None:
        code = error.code if isinstance(error, TesseraError) else ErrorCode.INTERNAL
        span.set_attributes({**self.query_attributes(), otel.DECISION: Decision.REFUSED.value})
        await self._write(decision=Decision.REFUSED, error_code=code)

    def _who(self) -> dict[str, object]:
        approved, forwarded = self.approved, self.forwarded
        if approved is None:
            return {
                "principal": forwarded.principal,
                "issuer": forwarded.issuer,
                "purpose": forwarded.purpose,
                "datasets": list(forwarded.datasets),
            }
        approval = approved.approval
        return {
            "principal": approved.subject,
            "issuer": approved.issuer,
            "purpose": approval.purpose,
            "datasets": approval.datasets[:32],
            "applicant": approved.applicant,
            "permits": [
                PermitRecord(
                    jurisdiction=self.jurisdiction,
                    issuer=approved.issuer,
                    request_id=approval.request_id,
                    application_id=approval.application_id,
                    organisation=approval.applicant,
                )
            ],
        }

    async def _write(self, **outcome: object) -> None:
        request = self.request
        record = AuditRecord.model_validate(
            {
                "time": utc_now(),
                "service": self.service,
                "query_id": request.query_id if request else None,
                "trace_id": otel.current_trace_id(),
                **self._who(),
                "caller": self.caller,
                "approval": request.request_id if request else None,
                "jurisdictions": [self.jurisdiction],
                "optout_register_version": self.optout_register_version,
                "sql_fingerprint": self.sql_fingerprint,
                "query_hash": released_hash(request.query.model_dump(mode="json"))
                if request
                else None,
                "steps": self.timeline.steps,
                **outcome,
            }
        )
        await otel.audit_written(self.log.record(record))
