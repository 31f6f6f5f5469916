"""The compliance API: the gateway's audit trail, for the compliance role only.

`auditEntries` lists entries newest first, filtered by time, researcher, data request,
jurisdiction and decision, a page at a time (`before` is the `nextBefore` of the previous
page); `auditEntry(queryId)` is one query's full record with its steps, per-node parts and
timings. A token without the compliance role (a researcher's) gets FORBIDDEN.

A gateway of several processes writes one chain per worker (`gateway.workers`), whichever
worker answers the compliance query: `auditEntry` looks in every chain of the gateway,
`auditEntries` pages one worker's chain (`worker`, default 0, the chain of a gateway of one
process), and `auditChains` names the chains there are with their workers.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final

import strawberry

from gateway.graphql.context import GatewayContext
from gateway.graphql.enums import Jurisdiction, NodeStatus
from gateway.settings import MAX_PROCESSES
from gateway.workers import audit_chain, gateway_chains, worker_of
from oversight.audit.store import AuditQuery
from schema.approval import Role
from schema.audit import entry as audit
from schema.errors import ErrorCode, TesseraError

MAX_FIRST: Final = 200

Info = strawberry.Info[GatewayContext, None]

# Registered under these names; annotations use the `schema.audit.entry` classes themselves.
strawberry.enum(
    audit.Decision, name="AuditDecision", description="What came of a query as a whole."
)
strawberry.enum(
    audit.NodeDecision, description="Whether the gateway's policy let a jurisdiction be asked."
)


@strawberry.type(description="One step of a query and how long it took.")
class AuditStep:
    name: str
    elapsed_ms: float

    @classmethod
    def of(cls, step: audit.StepTiming) -> AuditStep:
        return cls(name=step.name, elapsed_ms=step.elapsed_us / 1000)


@strawberry.type(description="One jurisdiction's part of a query, as the gateway saw it.")
class AuditNodeStep:
    jurisdiction: Jurisdiction
    decision: audit.NodeDecision
    status: NodeStatus
    latency_ms: float | None
    node_elapsed_ms: float | None = strawberry.field(description="Time the node reported.")
    rules_fired: list[str]
    cells_suppressed: int
    optout_register_version: str | None
    response_hash: str | None = strawberry.field(
        description="SHA-256 of the node's answer; the node's own audit entry holds the same."
    )
    error_code: str | None

    @classmethod
    def of(cls, step: audit.NodeStep) -> AuditNodeStep:
        return cls(
            jurisdiction=step.jurisdiction,
            decision=step.decision,
            status=step.status,
            latency_ms=_ms(step.latency_us),
            node_elapsed_ms=_ms(step.node_elapsed_us),
            rules_fired=list(step.rules),
            cells_suppressed=step.cells_suppressed,
            optout_register_version=step.optout_register_version,
            response_hash=step.response_hash,
            error_code=step.error_code.value if step.error_code else None,
        )


@strawberry.type(
    description="The permit a jurisdiction's part of a query was decided on (EHDS Art. 68)."
)
class AuditPermit:
    jurisdiction: Jurisdiction
    issuer: str = strawberry.field(description="The HDAB that issued the permit.")
    request: str = strawberry.field(description="The permit's data request id.")
    application: str | None = strawberry.field(
        description="The multi-country application the permit belongs to, if it names one."
    )
    organisation: str | None = strawberry.field(description="The applicant the permit names.")

    @classmethod
    def of(cls, permit: audit.PermitRecord) -> AuditPermit:
        return cls(
            jurisdiction=permit.jurisdiction,
            issuer=permit.issuer,
            request=permit.request_id,
            application=permit.application_id,
            organisation=permit.organisation,
        )


@strawberry.type(description="One query in the gateway's audit trail.")
class AuditEntry:
    chain: str = strawberry.field(
        description="The hash chain the entry is in: one per gateway worker process."
    )
    seq: int = strawberry.field(description="Position in the hash chain.")
    hash: str = strawberry.field(description="SHA-256 of the entry (`tessera audit verify`).")
    time: dt.datetime
    query_id: str | None
    trace_id: str | None
    researcher: str | None = strawberry.field(description="The token's subject.")
    issuer: str | None = strawberry.field(description="The issuer that authenticated them.")
    organisation: str | None = strawberry.field(
        description="The applicant organisation, when every permit names the same one."
    )
    approval: str | None = strawberry.field(
        description="The data request (or multi-country application) the question was asked under."
    )
    permits: list[AuditPermit] = strawberry.field(
        description="Per jurisdiction, the permit its part was decided on."
    )
    purpose: str | None
    datasets: list[str]
    jurisdictions: list[Jurisdiction]
    decision: audit.Decision
    error_code: str | None
    rules_fired: list[str]
    cells_suppressed: int
    query_hash: str | None
    result_hash: str | None = strawberry.field(description="SHA-256 of the released answer.")
    steps: list[AuditStep]
    nodes: list[AuditNodeStep]

    @classmethod
    def of(cls, row: audit.StoredEntry) -> AuditEntry:
        try:
            record = row.record()
        except ValueError:
            raise TesseraError(
                f"audit entry {row.seq} is unreadable: run `tessera audit verify`",
                code=ErrorCode.INTERNAL,
            ) from None
        return cls(
            chain=row.chain,
            seq=row.seq,
            hash=row.hash,
            time=dt.datetime.strptime(record.time, audit.TIME_FORMAT).replace(tzinfo=dt.UTC),
            query_id=record.query_id,
            trace_id=record.trace_id,
            researcher=record.principal,
            issuer=record.issuer,
            organisation=record.applicant.organisation if record.applicant else None,
            approval=record.approval,
            permits=[AuditPermit.of(p) for p in record.permits],
            purpose=record.purpose,
            datasets=list(record.datasets),
            jurisdictions=list(record.jurisdictions),
            decision=record.decision,
            error_code=record.error_code.value if record.error_code else None,
            rules_fired=list(record.rules),
            cells_suppressed=record.cells_suppressed,
            query_hash=record.query_hash,
            result_hash=record.result_hash,
            steps=[AuditStep.of(s) for s in record.steps],
            nodes=[AuditNodeStep.of(n) for n in record.nodes],
        )


@strawberry.type
class AuditPage:
    entries: list[AuditEntry]
    next_before: int | None = strawberry.field(
        description="Pass as `before` for the next (older) page; null on the last page."
    )


@strawberry.input(description="Every field given must hold.")
class AuditFilter:
    since: dt.datetime | None = strawberry.field(default=None, description="Inclusive.")
    until: dt.datetime | None = strawberry.field(default=None, description="Exclusive.")
    researcher: str | None = None
    approval: str | None = None
    jurisdiction: Jurisdiction | None = None
    decision: audit.Decision | None = None


def _require_compliance(info: Info) -> None:
    services = info.context.services
    principal = services.authenticator.authenticate(info.context.authorization)
    principal.require_role(Role.COMPLIANCE)


async def audit_entries(
    info: Info,
    filter: AuditFilter | None = None,
    first: int = 50,
    before: int | None = None,
    worker: Annotated[
        int,
        strawberry.argument(
            description="Whose chain: a gateway of one process has worker 0's only."
        ),
    ] = 0,
) -> AuditPage:
    _require_compliance(info)
    if not 1 <= first <= MAX_FIRST:
        raise TesseraError(
            f"first must lie between 1 and {MAX_FIRST}", code=ErrorCode.INVALID_ARGUMENT
        )
    given = filter or AuditFilter()
    if not 0 <= worker < MAX_PROCESSES:
        raise TesseraError(
            f"worker must lie between 0 and {MAX_PROCESSES - 1}", code=ErrorCode.INVALID_ARGUMENT
        )
    services = info.context.services
    rows = await services.audit.store.search(
        audit_chain(services.federation.gateway_id, worker),
        AuditQuery(
            since=_time(given.since),
            until=_time(given.until),
            principal=given.researcher,
            approval=given.approval,
            jurisdiction=given.jurisdiction,
            decision=given.decision.value if given.decision else None,
            before=before,
            limit=first + 1,
        ),
    )
    page = rows[:first]
    return AuditPage(
        entries=[AuditEntry.of(r) for r in page],
        next_before=page[-1].seq if len(rows) > first else None,
    )


async def audit_entry(info: Info, query_id: strawberry.ID) -> AuditEntry | None:
    _require_compliance(info)
    for chain in await _chains(info):
        rows = await info.context.services.audit.store.search(
            chain, AuditQuery(query_id=str(query_id), limit=1)
        )
        if rows:
            return AuditEntry.of(rows[0])
    return None


@strawberry.type(description="One chain of the gateway's audit trail.")
class AuditChain:
    chain: str
    worker: int = strawberry.field(description="The worker process that writes it.")


async def audit_chains(info: Info) -> list[AuditChain]:
    _require_compliance(info)
    return [AuditChain(chain=c, worker=worker_of(c)) for c in await _chains(info)]


async def _chains(info: Info) -> list[str]:
    services = info.context.services
    own = audit_chain(services.federation.gateway_id)
    # The chain this process writes is named even before its first entry.
    return gateway_chains(
        services.federation.gateway_id, [own, *await services.audit.store.chains()]
    )


def _time(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    # A time without an offset is read as UTC, like every time in the trail.
    return audit.format_time(moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC))


def _ms(micros: int | None) -> float | None:
    return None if micros is None else micros / 1000
