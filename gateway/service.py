"""The gateway's pipeline for one question: authenticate → authorize (permits presented) → plan →
policy (each jurisdiction on its own HDAB's permit) → limits (a place in the researcher's share
of the questions in flight, the request's cost budget, rate limits) → fan out (one request per
node, a second round when a pooled one fails) → quorum → combine (gateway-side disclosure
control) → audit; the fan-out and combining in turns the gateway gives out
(`gateway.admission`). Each step is an event of the question's span and a timing of its audit
entry (`gateway.query_trail`); `answer_cohort` only strings them together, all under the policy
set in force when the question started, however the files change meanwhile.

What a question asks is one value, `CohortQuestion`; what the caller's HTTP request holds
(credentials, its place in the share of questions in flight, its cost budget) is a `Caller`.
The GraphQL layer (`gateway.graphql`) only translates its inputs into those, the answer into
its types, and errors into GraphQL errors: nothing here knows about GraphQL.

Every outcome after authentication has its audit entry, written before the answer or the
error leaves; a caller without a valid token has no principal to record and is only logged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.trace import Tracer

from gateway.access import Access, decide_access
from gateway.admission import Admission
from gateway.auth import Authenticator, Principal, forbidden
from gateway.combine import Combined, combine
from gateway.deadline import query_deadline
from gateway.fairshare import FairShare
from gateway.federation import Federation
from gateway.latency import NodeTimeouts
from gateway.live_policy import query_policies
from gateway.nodes import NodeClient, NodeOutcome
from gateway.permits import PermitVerifier, Presented
from gateway.planner import Plan, cohort_cost, default_reference_date, plan_query
from gateway.pool_guard import guard_pools
from gateway.query_trail import QueryTrail, denied, released_values
from gateway.quorum import Quorum
from gateway.ratelimit import ApprovalKey, RateGuard
from gateway.rates import DEFAULT_PER, with_rates
from gateway.regression_client import RegressionClient
from gateway.rounds import Gathered, gather
from gateway.settings import (
    DEFAULT_MAX_ACTIVE_COHORTS,
    DEFAULT_MAX_COHORTS_PER_APPLICATION,
    DEFAULT_MAX_COHORTS_PER_RESEARCHER,
    DEFAULT_MAX_DEADLINE_S,
    DEFAULT_MAX_WAITING_COHORTS,
    MIN_DEADLINE_S,
    PartialPools,
)
from gateway.statistics import with_quantiles, with_summaries
from gateway.survival import with_survival
from gateway.vocabulary import ConceptClient
from oversight.audit.log import AuditLog
from policies.live import LivePolicy
from policies.policy_set import PolicySet
from schema import telemetry as otel
from schema.codes import AgeAt, Jurisdiction, NoiseLevel
from schema.errors import ErrorCode, TesseraError
from schema.query import Breakdown
from schema.wire import PERMIT_HEADER


@dataclass(frozen=True, slots=True)
class Services:
    federation: Federation
    authenticator: Authenticator
    node_client: NodeClient
    # The policies in force, reloaded while the gateway runs: a query reads `current` once, at
    # its start, and uses that policy set throughout (`gateway.live_policy`). Each
    # jurisdiction's published disclosure profile comes from there, the one place the gateway
    # reads them.
    policies: LivePolicy[PolicySet]
    permits: PermitVerifier
    rate_guard: RateGuard
    deadline_s: float
    # Each latency class's node timeout (`gateway.latency`).
    node_timeouts: NodeTimeouts
    max_query_cost: int
    audit: AuditLog
    tracer: Tracer
    max_deadline_s: float = DEFAULT_MAX_DEADLINE_S
    partial_pools: PartialPools = PartialPools.MARK
    # Vocabulary look-ups (`gateway.vocabulary`); None: this gateway cannot make them.
    concept_client: ConceptClient | None = None
    # Regression iterations (`gateway.regression`); None: this gateway cannot ask for them.
    regression_client: RegressionClient | None = None
    fair_share: FairShare = field(
        default_factory=lambda: FairShare(
            per_researcher=DEFAULT_MAX_COHORTS_PER_RESEARCHER,
            per_application=DEFAULT_MAX_COHORTS_PER_APPLICATION,
        )
    )
    # Turns for the fan-out and combining, per gateway process (`gateway.admission`).
    admission: Admission = field(
        default_factory=lambda: Admission(
            active=DEFAULT_MAX_ACTIVE_COHORTS, waiting=DEFAULT_MAX_WAITING_COHORTS
        )
    )

    def trail(self) -> QueryTrail:
        return QueryTrail(log=self.audit, tracer=self.tracer, service=self.federation.gateway_id)


@dataclass(frozen=True, slots=True)
class CohortQuestion:
    """One question as the researcher asked it. `criteria` is the query model's `Criteria` as
    plain data (its codes as written: planning checks them); `tables` the breakdowns selected,
    `pool_total` whether the pooled count is, `per_country` whether each country's own count
    is. None stands for what the researcher left to the gateway: every member, 1 January of
    this year, the default age basis, the gateway's deadline, no quorum."""

    request: str
    criteria: Mapping[str, Any]
    tables: tuple[Breakdown, ...]
    pool_total: bool
    per_country: bool
    # The query model's `IndexEvent` as plain data, when the question has one.
    index: Mapping[str, Any] | None = None
    jurisdictions: tuple[Jurisdiction, ...] | None = None
    reference_date: dt.date | None = None
    age_at: AgeAt | None = None
    deadline_ms: int | None = None
    min_nodes: int | None = None
    min_share: float | None = None
    noise: NoiseLevel = NoiseLevel.STANDARD
    # A numeric variable (`schema.query.NumericVariable` as plain data), and whether its
    # summary is asked (else only its histogram: a breakdown by VALUE_BIN).
    variable: Mapping[str, Any] | None = None
    summary: bool = True
    # An incidence rate's outcome (`schema.query.Outcome` as plain data), and the
    # person-years its rates are given per.
    outcome: Mapping[str, Any] | None = None
    rate_per: int = DEFAULT_PER
    # Follow-up to an outcome (`schema.query.Survival` as plain data), for its curves; and
    # whether each country's curves are asked too. They are made of national tables, so a
    # question that asks them is not pooled securely (a round's shares would hide them); one
    # that does not gets its pooled curves from a secure round, where each country's exits
    # may all be below its minimum (a rare cohort).
    survival: Mapping[str, Any] | None = None
    curves_by_country: bool = True

    @property
    def secure_pooling(self) -> bool:
        """Whether the question's tables may be pooled securely."""
        return self.survival is None or not self.curves_by_country


class Place(Protocol):
    """A question's place in the researcher's share of the questions in flight."""

    def free(self) -> None: ...


class Caller(Protocol):
    """What the HTTP request a question came in brings: its credentials, verified once for all
    its questions; the places of its questions in the researcher's share of the questions in
    flight (`gateway.fairshare`), admitted together; the cost budget its questions share."""

    def principal(self) -> Principal:
        """The authenticated caller; raises UNAUTHENTICATED or a TOKEN_* error."""
        ...

    def presented(self) -> Presented:
        """The caller's permits, verified; raises TOO_MANY_PERMITS or a TOKEN_* error."""
        ...

    def admit_cohort(self) -> Place:
        """A place for one question, or TOO_MANY_IN_FLIGHT."""
        ...

    def charge(self, cost: int) -> None:
        """Spend `cost` of the request's budget, or QUERY_TOO_COMPLEX."""
        ...


@dataclass(frozen=True, slots=True)
class CohortAnswer:
    plan: Plan
    combined: Combined
    trace_id: str | None


async def answer_cohort(
    services: Services, caller: Caller, question: CohortQuestion
) -> CohortAnswer:
    """Answer one question, or raise its refusal, each with its audit entry written first."""
    trail = services.trail()
    held: list[Place] = []
    with otel.traced(services.tracer, otel.GATEWAY_COHORT) as span:
        trail.trace_id = otel.current_trace_id()
        with trail.step("authenticate"):
            trail.principal = caller.principal()
        try:
            try:
                with query_policies(services.policies.current) as policies:
                    outcomes, combined = await _answer(
                        services, caller, trail, policies, question, held
                    )
            except Exception as error:
                await trail.refused(error, span)
                raise
            await trail.answered(outcomes, combined, span)
        finally:
            # Once its audit entry is written: until then the question is still in flight.
            for place in held:
                place.free()
    assert trail.plan is not None
    return CohortAnswer(trail.plan, combined, trail.trace_id)


async def _answer(
    services: Services,
    caller: Caller,
    trail: QueryTrail,
    policies: PolicySet,
    question: CohortQuestion,
    held: list[Place],
) -> tuple[list[NodeOutcome], Combined]:
    with trail.step("authorize"):
        presented = authorize(caller)
    with trail.step("plan"):
        # Planned (and recorded) before the permits are matched: a refusal names the question.
        plan = trail.plan = plan_question(services, trail, question)
        check_request(presented, question.request)
    with trail.step("policy") as span:
        access = decide_question_access(services, plan, presented, policies)
        trail.decisions, trail.permits = access.decisions, access.permits
        span.set_attributes(
            {
                otel.DENIED_JURISDICTIONS: denied(access.decisions.values()),
                otel.RULES_FIRED: sorted(
                    {r.rule for d in access.decisions.values() for r in d.reasons}
                ),
            }
        )
    with trail.step("limits"):
        await within_limits(services, caller, plan, access, policies, held)
    deadline_s = query_deadline(
        question.deadline_ms, default_s=services.deadline_s, max_s=services.max_deadline_s
    )
    quorum = Quorum.of(
        min_nodes=question.min_nodes, min_share=question.min_share, asked=len(plan.jurisdictions)
    )
    async with admitted(services, trail, deadline_s) as waited:
        with trail.step("fan_out"):
            gathered = await _fan_out(
                services, trail, plan, access, policies, question, deadline_s=deadline_s - waited
            )
        quorum.check(gathered.outcomes)
        return gathered.outcomes, _combine(services, policies, question, plan, gathered, trail)


def _combine(
    services: Services,
    policies: PolicySet,
    question: CohortQuestion,
    plan: Plan,
    gathered: Gathered,
    trail: QueryTrail,
) -> Combined:
    with trail.step("combine") as span:
        combined = with_survival(
            with_quantiles(
                with_summaries(
                    guard_pools(
                        combine(plan.tables, gathered.outcomes, policies.profile, gathered.pooling),
                        gathered.outcomes,
                        services.partial_pools,
                    ),
                    plan.node_query,
                    plan.tables,
                    gathered.outcomes,
                    policies.profile,
                ),
                plan.node_query,
            ),
            plan.node_query,
            gathered.outcomes,
            policies.profile,
            gathered.pooling,
            by_country=question.curves_by_country,
        )
        combined = with_rates(
            combined,
            plan.node_query,
            plan.tables,
            gathered.outcomes,
            policies.profile,
            question.rate_per,
        )
        released = released_values(combined)
        span.set_attributes(
            {
                otel.CELLS_SUPPRESSED: sum(v.value is None for v in released),
                otel.RULES_FIRED: sorted({r.rule for v in released for r in v.reasons}),
            }
        )
    return combined


def authorize(caller: Caller) -> Presented:
    # The researcher role is checked before a question reaches the service (the GraphQL
    # field's permission).
    presented = caller.presented()
    if not presented:
        raise forbidden(
            f"no permit was presented: send each HDAB's permit in an {PERMIT_HEADER} header"
        )
    return presented


def plan_question(services: Services, trail: QueryTrail, question: CohortQuestion) -> Plan:
    assert trail.principal is not None
    return plan_query(
        members=services.federation.members,
        subject=trail.principal.subject,
        request_id=question.request,
        criteria=question.criteria,
        index=question.index,
        jurisdictions=question.jurisdictions,
        reference_date=question.reference_date or default_reference_date(),
        tables=question.tables,
        query_id=trail.query_id,
        noise=question.noise,
        age_at=question.age_at,
        variable=question.variable,
        summary=question.summary,
        outcome=question.outcome,
        survival=question.survival,
    )


def check_request(presented: Presented, request: str) -> None:
    if presented.permits and not presented.names(request):
        raise TesseraError(
            "request is neither the data request nor the application of any permit presented",
            code=ErrorCode.REQUEST_MISMATCH,
        )


def decide_question_access(
    services: Services, plan: Plan, presented: Presented, policies: PolicySet
) -> Access:
    # The law of every jurisdiction involved, each on its own HDAB's permit, before anything
    # leaves the gateway.
    federation = services.federation
    return decide_access(
        plan,
        presented,
        policies,
        allowed=federation.issues_permits_for,
        datasets={j: node.datasets for j, node in federation.nodes.items()},
    )


@contextlib.asynccontextmanager
async def admitted(
    services: Services, trail: QueryTrail, deadline_s: float
) -> AsyncIterator[float]:
    """Holds the question's turn for its expensive phase (`gateway.admission`) while the
    block runs; yields the seconds waited, the audit step `admission`. Waiting spends the
    question's own deadline, never more."""
    async with contextlib.AsyncExitStack() as turn:
        with trail.step("admission"):
            waited = await turn.enter_async_context(
                services.admission.turn(within_s=max(0.0, deadline_s - MIN_DEADLINE_S))
            )
        yield waited


async def within_limits(
    services: Services,
    caller: Caller,
    plan: Plan,
    access: Access,
    policies: PolicySet,
    held: list[Place],
) -> None:
    # The request's questions are admitted together, before any of them fans out.
    held.append(caller.admit_cohort())
    # Charged before this question's first await, and refused when too costly without taking
    # a rate-limit token.
    caller.charge(cohort_cost(plan))
    await services.rate_guard.check(
        subject=plan.subject,
        jurisdictions=plan.jurisdictions,
        approvals={
            j: ApprovalKey(p.issuer, p.approval.request_id) for j, p in access.permits.items()
        },
        policy_set=policies,
    )


async def _fan_out(
    services: Services,
    trail: QueryTrail,
    plan: Plan,
    access: Access,
    policies: PolicySet,
    question: CohortQuestion,
    *,
    deadline_s: float,
) -> Gathered:
    # A client that disconnects cancels this task (the server runs with handler
    # cancellation), and with it every node request still in flight. A question that pools
    # securely may take a second round (`gateway.rounds`).
    return await gather(
        services.node_client,
        services.federation.nodes,
        plan,
        access.decisions,
        permits=access.permits,
        profiles=policies.profile,
        deadline_s=deadline_s,
        timeouts=services.node_timeouts,
        tracer=services.tracer,
        steps=trail.node_steps,
        pool_total=question.pool_total,
        per_country=question.per_country,
        secure_pooling=question.secure_pooling,
    )
