"""The root query. `cohort` authenticates, verifies the permits, plans, decides each
jurisdiction on its own permit, takes its place in the researcher's share of the questions in
flight, charges the cost budget, takes rate-limit tokens, fans out and combines once per
field, all under the policy set in force when it started; the breakdown tables are then only
looked up (`CohortResult.breakdown`).

`cohort` is nullable: a field that is refused or fails is null with its error (at its path),
and costs no other field of the request its answer. Each field has its own audit entry, so
the trail holds exactly what the researcher received: an answer for each field answered, a
refusal for each field refused."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import strawberry

from gateway.access import decide_access
from gateway.auth import forbidden
from gateway.combine import Combined, combine
from gateway.deadline import query_deadline
from gateway.graphql.compliance import AuditEntry, AuditPage, audit_entries, audit_entry
from gateway.graphql.context import AdmittedField, GatewayContext
from gateway.graphql.enums import AgeAt, Jurisdiction, NoiseLevel
from gateway.graphql.inputs import CriteriaInput, criteria_data
from gateway.graphql.issuers import TrustedIssuerInfo, trusted_issuers
from gateway.graphql.limits import cohort_cost
from gateway.graphql.permissions import allow
from gateway.graphql.selection import (
    requested_breakdowns,
    requested_count,
    requested_node_count,
)
from gateway.graphql.tracing import current_trace_id
from gateway.graphql.types import CohortResult, JurisdictionInfo, JurisdictionPolicy
from gateway.graphql.vocabulary import ConceptInfo, resolve_concepts
from gateway.live_policy import query_policies
from gateway.nodes import NodeOutcome
from gateway.planner import default_reference_date, plan_query
from gateway.pool_guard import guard_pools
from gateway.query_trail import QueryTrail, denied, released_values
from gateway.quorum import Quorum
from gateway.ratelimit import ApprovalKey
from gateway.rounds import gather
from policies.policy_set import PolicySet
from policies.transparency import publish
from schema import telemetry as otel
from schema.approval import Role
from schema.errors import ErrorCode, TesseraError
from schema.query import Breakdown
from schema.wire import PERMIT_HEADER

Info = strawberry.Info[GatewayContext, None]


async def resolve_cohort(
    info: Info,
    *,
    request: str,
    jurisdictions: list[Jurisdiction] | None,
    criteria: CriteriaInput,
    reference_date: dt.date | None,
    age_at: AgeAt | None = None,
    deadline_ms: int | None = None,
    min_nodes: int | None = None,
    min_share: float | None = None,
    noise: NoiseLevel = NoiseLevel.STANDARD,
) -> CohortResult:
    services = info.context.services
    trail = services.trail()
    held: list[AdmittedField] = []
    with otel.traced(services.tracer, otel.GATEWAY_COHORT) as span:
        trail.trace_id = current_trace_id()
        with trail.step("authenticate"):
            trail.principal = info.context.principal()
        # Every outcome from here on has its audit entry, written before it leaves; a caller
        # without a valid token has no principal to record and is only logged. The whole
        # query runs under the policy set in force now, however the files change meanwhile.
        try:
            try:
                with query_policies(services.policies.current) as policies:
                    outcomes, combined = await _answer(
                        info.context,
                        trail,
                        policies,
                        request=request,
                        jurisdictions=jurisdictions,
                        criteria=criteria,
                        reference_date=reference_date,
                        age_at=age_at,
                        tables=requested_breakdowns(info.selected_fields),
                        pool_total=requested_count(info.selected_fields),
                        per_country=requested_node_count(info.selected_fields),
                        deadline_ms=deadline_ms,
                        min_nodes=min_nodes,
                        min_share=min_share,
                        noise=noise,
                        held=held,
                    )
            except Exception as error:
                await trail.refused(error, span)
                raise
            await trail.answered(outcomes, combined, span)
        finally:
            # Once its audit entry is written: until then the question is still in flight.
            for admitted in held:
                admitted.free()
    assert trail.plan is not None
    return CohortResult.of(trail.plan, combined, trace_id=trail.trace_id)


async def _answer(
    context: GatewayContext,
    trail: QueryTrail,
    policies: PolicySet,
    *,
    request: str,
    jurisdictions: list[Jurisdiction] | None,
    criteria: CriteriaInput,
    reference_date: dt.date | None,
    age_at: AgeAt | None,
    tables: list[Breakdown],
    pool_total: bool,
    per_country: bool,
    deadline_ms: int | None,
    min_nodes: int | None,
    min_share: float | None,
    noise: NoiseLevel,
    held: list[AdmittedField],
) -> tuple[list[NodeOutcome], Combined]:
    assert trail.principal is not None
    services, subject = context.services, trail.principal.subject
    with trail.step("authorize"):
        # The researcher role is checked by the field's permission, before this runs.
        presented = context.presented()
        if not presented:
            raise forbidden(
                f"no permit was presented: send each HDAB's permit in an {PERMIT_HEADER} header"
            )
    with trail.step("plan"):
        trail.plan = plan = plan_query(
            members=services.federation.members,
            subject=subject,
            request_id=request,
            criteria=criteria_data(criteria),
            jurisdictions=jurisdictions,
            reference_date=reference_date or default_reference_date(),
            tables=tables,
            query_id=trail.query_id,
            noise=noise,
            age_at=age_at,
        )
        if presented.permits and not presented.names(request):
            raise TesseraError(
                "request is neither the data request nor the application of any permit presented",
                code=ErrorCode.REQUEST_MISMATCH,
            )
    with trail.step("policy") as span:
        # The law of every jurisdiction involved, each on its own HDAB's permit, before
        # anything leaves the gateway.
        federation = services.federation
        access = decide_access(
            plan,
            presented,
            policies,
            allowed=federation.issues_permits_for,
            datasets={j: node.datasets for j, node in federation.nodes.items()},
        )
        trail.decisions = decisions = access.decisions
        trail.permits = access.permits
        span.set_attributes(
            {
                otel.DENIED_JURISDICTIONS: denied(decisions.values()),
                otel.RULES_FIRED: sorted({r.rule for d in decisions.values() for r in d.reasons}),
            }
        )
    with trail.step("limits"):
        # The request's questions are admitted together, before any of them fans out.
        held.append(context.admit_cohort())
        # Charged before this field's first await, and refused when too costly without
        # taking a rate-limit token.
        context.budget.charge(cohort_cost(plan))
        await services.rate_guard.check(
            subject=subject,
            jurisdictions=plan.jurisdictions,
            approvals={
                j: ApprovalKey(p.issuer, p.approval.request_id) for j, p in access.permits.items()
            },
            policy_set=policies,
        )
    deadline_s = query_deadline(
        deadline_ms, default_s=services.deadline_s, max_s=services.max_deadline_s
    )
    quorum = Quorum.of(min_nodes=min_nodes, min_share=min_share, asked=len(plan.jurisdictions))
    with trail.step("fan_out"):
        # A client that disconnects cancels this task (the server runs with handler
        # cancellation), and with it every node request still in flight. A question that
        # pools securely may take a second round (`gateway.rounds`).
        gathered = await gather(
            services.node_client,
            services.federation.nodes,
            plan,
            decisions,
            permits=access.permits,
            profiles=policies.profile,
            deadline_s=deadline_s,
            node_timeout_s=services.node_timeout_s,
            tracer=services.tracer,
            steps=trail.node_steps,
            pool_total=pool_total,
            per_country=per_country,
        )
        outcomes = gathered.outcomes
    quorum.check(outcomes)
    with trail.step("combine") as span:
        combined = guard_pools(
            combine(plan.tables, outcomes, policies.profile, gathered.pooling),
            outcomes,
            services.partial_pools,
        )
        released = released_values(combined)
        span.set_attributes(
            {
                otel.CELLS_SUPPRESSED: sum(v.value is None for v in released),
                otel.RULES_FIRED: sorted({r.rule for v in released for r in v.reasons}),
            }
        )
    return outcomes, combined


async def _cohort(
    info: Info,
    *,
    request: str,
    jurisdictions: list[Jurisdiction] | None = strawberry.UNSET,
    criteria: CriteriaInput,
    reference_date: Annotated[
        dt.date | None,
        strawberry.argument(
            description="The question's reference date (default: 1 January of the current "
            "year). The population is the persons born by its year, and ages are taken at it "
            "when ageAt is REFERENCE_DATE. For historic data (a trial of the 1990s) set it, or "
            "take ages at the index event."
        ),
    ] = strawberry.UNSET,
    age_at: Annotated[
        AgeAt | None,
        strawberry.argument(
            description="When ages are taken, for age criteria and age bands alike. Default: "
            "INDEX_EVENT when the criteria name a condition, drug or measurement at the top "
            "level, else REFERENCE_DATE."
        ),
    ] = strawberry.UNSET,
    deadline_ms: int | None = strawberry.UNSET,
    min_nodes: int | None = strawberry.UNSET,
    min_share: float | None = strawberry.UNSET,
    noise: NoiseLevel | None = strawberry.UNSET,
) -> CohortResult | None:
    # UNSET (argument omitted) and null both mean "not given".
    return await resolve_cohort(
        info,
        request=request,
        jurisdictions=None if jurisdictions is strawberry.UNSET else jurisdictions,
        criteria=criteria,
        reference_date=None if reference_date is strawberry.UNSET else reference_date,
        age_at=None if age_at is strawberry.UNSET else age_at,
        deadline_ms=None if deadline_ms is strawberry.UNSET else deadline_ms,
        min_nodes=None if min_nodes is strawberry.UNSET else min_nodes,
        min_share=None if min_share is strawberry.UNSET else min_share,
        noise=NoiseLevel.STANDARD if noise in (strawberry.UNSET, None) else noise,
    )


def _jurisdictions(info: Info) -> list[JurisdictionInfo]:
    services = info.context.services
    policies = services.policies.current
    return [
        JurisdictionInfo.of(j, node.node_id, policies.profile(j))
        for j, node in services.federation.nodes.items()
    ]


def _policies(
    info: Info, jurisdictions: list[Jurisdiction] | None = None
) -> list[JurisdictionPolicy]:
    """Published rules of the federation's members (or those asked), with their sources."""
    services = info.context.services
    members = services.federation.members
    wanted = [j for j in (jurisdictions or members) if j in members]
    policies = services.policies.current
    return [
        JurisdictionPolicy.of(publish(policies.effective(j)))
        for j in wanted
        if j in policies.jurisdictions
    ]


@strawberry.type
class Query:
    cohort: CohortResult | None = strawberry.field(
        resolver=_cohort,
        permission_classes=[allow(Role.RESEARCHER)],
        description="Ask one question of the federation under approved data requests: one "
        "permit per jurisdiction, each from that jurisdiction's HDAB, sent in X-Tessera-Permit "
        "headers. `request` must be the data request id or the application id of the "
        "permits; a jurisdiction without a permit is DENIED (PERMIT_MISSING). `jurisdictions` "
        "defaults to every member; `referenceDate` defaults to 1 January of the current year "
        "and `ageAt` to the index event when the criteria name one (see both). `deadlineMs` "
        "bounds the wait for the nodes (default and upper bound set by the gateway); nodes "
        "that have not answered by then "
        "are TIMEOUT. `minNodes` / `minShare` require that many (or that share) of the asked "
        "nodes to answer OK, or the query fails with QUORUM_NOT_MET. `noise: COARSE` asks for "
        "twice the noise at a quarter of the privacy cost (for exploring). Null when refused or "
        "failed, with the reason in `errors` (its `path` names the field): one field's "
        "refusal never takes another field's answer with it.",
    )
    concepts: list[ConceptInfo] = strawberry.field(
        resolver=resolve_concepts,
        permission_classes=[allow(Role.RESEARCHER)],
        description="What the nodes' vocabularies hold of up to 32 codes: each code's name, "
        "the concepts it names and reaches (what a question on it counts), and which nodes "
        "know it. Facts about the vocabularies, not data: each node answers from its concept "
        "tables only, so no permit is needed and no privacy budget is spent.",
    )
    jurisdictions: list[JurisdictionInfo] = strawberry.field(
        resolver=_jurisdictions,
        description="The federation's members and their disclosure rules (no token needed).",
    )
    policies: list[JurisdictionPolicy] = strawberry.field(
        resolver=_policies,
        description="Each member's effective legal and disclosure rules, every rule with its "
        "public source and whether the HDAB confirmed it (no token needed).",
    )
    audit_entries: AuditPage = strawberry.field(
        resolver=audit_entries,
        description="The gateway's audit trail, newest first (compliance role only).",
    )
    audit_entry: AuditEntry | None = strawberry.field(
        resolver=audit_entry,
        description="One query's full audit record (compliance role only).",
    )
    issuers: list[TrustedIssuerInfo] = strawberry.field(
        resolver=trusted_issuers,
        permission_classes=[allow(Role.COMPLIANCE, Role.OPERATOR)],
        description="The HDABs whose tokens this gateway accepts (compliance and operator roles).",
    )
