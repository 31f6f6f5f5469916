"""The gateway's pipeline for a regression: authenticate → authorize → plan the cohort as a
count's question (its criteria, index and permits) → policy → limits → a turn
(`gateway.admission`, one for the whole fit, as a count's fan-out takes one) → the fit
(`gateway.regression_fit`: every iteration one signed request per allowed node, each node's
part checked before it is added) → audit.

Each iteration charges the applicant's ledger at every node (the nodes do, as for any
question); the same iteration asked again (the same cohort, model and β) is replayed by each
node from its store, free. A node that refuses (its policy, or DataSHIELD's checks) is left
out with its reasons; a node whose part is malformed is left out as REJECTED; a node that
drops out after the first iteration stops the fit where every node had answered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gateway.live_policy import query_policies
from gateway.permits import Permit
from gateway.planner import Plan
from gateway.query_trail import QueryTrail
from gateway.regression_client import failed
from gateway.regression_fit import (
    DEFAULT_MAX_ITERATIONS,
    REJECTED_PART,
    Fit,
    RejectedPart,
    check_part,
    fit,
)
from gateway.service import (
    Caller,
    CohortQuestion,
    Place,
    Services,
    admitted,
    authorize,
    check_request,
    decide_question_access,
    plan_question,
    within_limits,
)
from policies.policy_set import PolicySet
from schema import telemetry as otel
from schema.codes import AgeAt, Jurisdiction, NodeStatus, NoiseLevel
from schema.errors import ErrorCode, TesseraError
from schema.regression import (
    MAX_ITERATIONS,
    RegressionModel,
    RegressionPart,
    RegressionStep,
    check_cohort,
)
from schema.result import Reason

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RegressionQuestion:
    """A regression as the researcher asked it: the cohort (as `CohortQuestion` takes it, an
    index required), the model (`schema.regression.RegressionModel` as plain data) and how
    many iterations at most."""

    request: str
    criteria: Mapping[str, Any]
    index: Mapping[str, Any] | None
    model: Mapping[str, Any]
    jurisdictions: tuple[Jurisdiction, ...] | None = None
    reference_date: dt.date | None = None
    age_at: AgeAt | None = None
    noise: NoiseLevel = NoiseLevel.STANDARD
    max_iterations: int = DEFAULT_MAX_ITERATIONS


@dataclass(frozen=True, slots=True)
class FittedRegression:
    plan: Plan
    fit: Fit
    trace_id: str | None


def _model(question: RegressionQuestion) -> RegressionModel:
    try:
        return RegressionModel.model_validate(question.model)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "model"
        raise TesseraError(
            f"invalid model at {where}: {first['msg']}"[:300], code=ErrorCode.INVALID_CRITERIA
        ) from None


async def answer_regression(
    services: Services, caller: Caller, question: RegressionQuestion
) -> FittedRegression:
    """Fit one regression, or raise its refusal, each with its audit entry written first."""
    if services.regression_client is None:
        raise TesseraError(
            "this gateway cannot ask the nodes for regressions", code=ErrorCode.INTERNAL
        )
    if not 1 <= question.max_iterations <= MAX_ITERATIONS:
        raise TesseraError(
            f"maxIterations lies between 1 and {MAX_ITERATIONS}", code=ErrorCode.INVALID_ARGUMENT
        )
    trail = services.trail()
    held: list[Place] = []
    with otel.traced(services.tracer, otel.GATEWAY_COHORT) as span:
        trail.trace_id = otel.current_trace_id()
        with trail.step("authenticate"):
            trail.principal = caller.principal()
        try:
            try:
                with query_policies(services.policies.current) as policies:
                    result = await _answer(services, caller, trail, policies, question, held)
            except Exception as error:
                await trail.refused(error, span)
                raise
            await trail.fitted(_released(result.fit), span)
        finally:
            for place in held:
                place.free()
    assert trail.plan is not None
    return FittedRegression(trail.plan, result.fit, trail.trace_id)


@dataclass(frozen=True, slots=True)
class _Result:
    fit: Fit


async def _answer(
    services: Services,
    caller: Caller,
    trail: QueryTrail,
    policies: PolicySet,
    question: RegressionQuestion,
    held: list[Place],
) -> _Result:
    with trail.step("authorize"):
        presented = authorize(caller)
    with trail.step("plan"):
        cohort = CohortQuestion(
            request=question.request,
            criteria=question.criteria,
            index=question.index,
            tables=((),),
            pool_total=False,
            per_country=True,
            jurisdictions=question.jurisdictions,
            reference_date=question.reference_date,
            age_at=question.age_at,
            noise=question.noise,
        )
        plan = trail.plan = plan_question(services, trail, cohort)
        check_request(presented, question.request)
        model = _model(question)
        try:
            check_cohort(plan.node_query)
        except ValueError as exc:
            raise TesseraError(str(exc), code=ErrorCode.INVALID_CRITERIA) from None
    with trail.step("policy"):
        access = decide_question_access(services, plan, presented, policies)
        trail.decisions, trail.permits = access.decisions, access.permits
    with trail.step("limits"):
        await within_limits(services, caller, plan, access, policies, held)
    client = services.regression_client
    assert client is not None
    nodes = services.federation.nodes

    async def part(
        jurisdiction: Jurisdiction, beta: Sequence[float], scale: float, then: Sequence[float]
    ) -> RegressionPart:
        decision = access.decisions[jurisdiction]
        permit: Permit | None = access.permits.get(jurisdiction)
        if not decision.allowed or permit is None:
            return RegressionPart(
                query_id=plan.query_id,
                jurisdiction=jurisdiction,
                status=NodeStatus.DENIED,
                reasons=[r.as_reason() for r in decision.reasons]
                or [Reason(rule="PERMIT_MISSING", jurisdiction=jurisdiction)],
            )
        step = RegressionStep(
            request=plan.node_request(jurisdiction, permit.approval),
            model=model,
            beta=list(beta),
            noise_scale=scale,
            then=list(then),
        )
        started = time.perf_counter()
        # Each step waits for a node as long as its latency class allows.
        timeout = services.node_timeouts.within(services.deadline_s, nodes[jurisdiction].latency)
        try:
            async with asyncio.timeout(timeout + 1.0):
                answer = await client.step(
                    nodes[jurisdiction], step, approval_token=permit.token, timeout=timeout
                )
        except TimeoutError:
            return failed(jurisdiction, step, "TIMEOUT", f"no answer within {timeout:.1f} s")
        log.debug(
            "regression %s: %s in %.1f ms",
            plan.query_id,
            jurisdiction.value,
            (time.perf_counter() - started) * 1000,
        )
        if answer.status is not NodeStatus.OK:
            return answer
        sd = policies.profile(jurisdiction).noise_sd(plan.noise) * scale
        try:
            check_part(answer, model, sd)
        except RejectedPart as e:
            log.warning("regression %s: %s's part rejected: %s", plan.query_id, jurisdiction, e)
            return failed(jurisdiction, step, REJECTED_PART, str(e))
        return answer

    async def ask(
        beta: Sequence[float],
        only: Sequence[Jurisdiction] | None,
        scale: float,
        then: Sequence[float],
    ) -> list[RegressionPart]:
        asked = plan.jurisdictions if only is None else only
        return list(await asyncio.gather(*(part(j, beta, scale, then) for j in asked)))

    if not access.permits:
        raise TesseraError("no jurisdiction of the question has a permit", code=ErrorCode.FORBIDDEN)
    # One turn for the whole fit: its iterations hold their parts until it ends.
    async with admitted(services, trail, services.deadline_s):
        with trail.step("fit"):
            return _Result(await fit(model, ask, max_iterations=question.max_iterations))


def _released(result: Fit) -> dict[str, object]:
    """What the researcher receives, for the audit entry's hash."""
    return {
        "family": result.family.value,
        "iterations": result.iterations,
        "converged": result.converged,
        "coefficients": [
            {
                "name": c.name,
                "estimate": c.estimate,
                "se": c.se,
                "noise_sd": c.noise_sd,
                "ci": [c.ci_low, c.ci_high],
                "p": c.p_value,
            }
            for c in result.coefficients
        ],
        "n": {j.value: v.model_dump(mode="json") for j, v in result.n.items()},
        "reasons": [r.model_dump(mode="json") for r in result.reasons],
    }
