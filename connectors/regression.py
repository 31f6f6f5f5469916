"""One iteration of a federated regression at a node: verify → parse → the permit → the
node's policy → the stored answer for this question and β (replayed, free) or: the design of
the cohort (read here, never sent) → DataSHIELD's disclosure checks → the ledger → the
cohort's information matrix and score part at β, in whole units, noisy → stored → released.

The design is read with the cohort compiler: the cohort's persons with their age at the index
and their sex (`compile_persons`), and, for each event term, the persons of the cohort who
also satisfy it as a criterion relative to the index (a `RelativeCriterion`: the same SQL
every count uses). An EVENT_COUNT outcome is the number of thresholds k = 1..max_count for
which the person has at least k events: clipped at max_count by construction.

Every number released is a sum over the persons the ledger still counts, each person's
contribution bounded by the model's public bounds (`schema.regression`), with discrete
Gaussian noise at the question's sd times the sum's sensitivity, charged to each person
counted as a count is (docs/protection.md, "Regression"). The checks below are the one
place a node refuses for what the data hold, as DataSHIELD does: a refusal says only which
check failed, never a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import orjson
from numpy.typing import NDArray
from opentelemetry.context import Context
from pydantic import ValidationError

from connectors.answers import Shelf, StoredTable
from connectors.backends.base import person_indexes
from connectors.canonical import question_digest
from connectors.compiler import (
    ConceptSet,
    Row,
    SqlStatement,
    compile_measured,
    compile_persons,
)
from connectors.errors import BadRequest, QueryTimeout, QuestionTooCostly
from connectors.ledger import accounts_of, rho_of, units
from connectors.node_trail import Forwarded, NodeTrail
from connectors.noise import NoiseSource
from connectors.service import QueryService, check_jurisdiction, node_decision
from policies.disclosure import BELOW_MINIMUM
from policies.profiles import DisclosureProfile
from schema.approval import ApplicantId
from schema.codes import MeasureKind, NodeStatus, ValueStatus
from schema.query import (
    CohortQuery,
    Criteria,
    EventSpec,
    NumericVariable,
    RelativeCriterion,
    RelativeWindow,
)
from schema.regression import (
    MAX_PARAMETER_SHARE,
    MIN_REGRESSION_PERSONS,
    RESOLUTION,
    CovariateKind,
    Family,
    OutcomeKind,
    RegressionModel,
    RegressionPart,
    RegressionRefusal,
    RegressionStep,
)
from schema.result import Reason, Value
from schema.wire import NodeResponse, PrivacySpend

log = logging.getLogger(__name__)

FEMALE_CONCEPT: Final = 8532
Matrix = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Design:
    """The cohort's persons, their scaled covariates (intercept first) and outcome, and the
    columns that are binary (for the checks). Lives only inside one iteration."""

    persons: NDArray[np.uint32]
    x: Matrix
    y: NDArray[np.float64]
    binary: tuple[int, ...]

    def only(self, keep: NDArray[np.bool_]) -> Design:
        return Design(self.persons[keep], self.x[keep], self.y[keep], self.binary)


def parse_step(body: bytes) -> RegressionStep:
    try:
        return RegressionStep.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise BadRequest(f"invalid regression at {where}: {first['msg']}"[:300]) from None


def scaled_age(age: NDArray[np.float64], bounds: tuple[float, float]) -> NDArray[np.float64]:
    """A value (an age, a measurement) clipped to its public bounds, less their centre, over
    their half width: in [−1, 1]."""
    lo, hi = bounds
    centre, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    scaled: NDArray[np.float64] = (np.clip(age, lo, hi) - centre) / half
    return scaled


def measured_values(rows: Sequence[Row], measurement: NumericVariable) -> dict[int, float]:
    """Each person's value of a measurement term (`compile_measured`'s rows): their whole
    units (a mean of them rounded half up, as a summary's are), clipped to the public
    bounds, in the measurement's unit."""
    clipping = measurement.clipping
    values = {}
    for person, raw in rows:
        whole = math.floor(float(raw) + 0.5)
        values[int(person)] = min(max(whole, clipping.lo), clipping.hi) * clipping.resolution
    return values


def complete_cases_digest(count_digest: str, model: RegressionModel) -> str:
    """The digest of a design's count when its measurement terms leave out the persons
    without a value: the cohort's and those terms' (never the cohort count's own digest,
    which a count of the cohort replays)."""
    measured = [(c.measurement, c.window) for c in model.covariates]
    measured.append((model.outcome.measurement, model.outcome.window))
    terms = [
        {"measurement": m.model_dump(mode="json"), "window": w.model_dump()}
        for m, w in measured
        if m is not None
    ]
    if not terms:
        return count_digest
    payload = orjson.dumps({"cohort": count_digest, "complete": terms})
    return "regression-n:" + hashlib.sha256(payload).hexdigest()


def scaled_outcome(y: NDArray[np.float64], model: RegressionModel) -> NDArray[np.float64]:
    """The outcome as the family's sums take it: a Gaussian's scaled to [−1, 1] by its public
    range, the others as they are (0/1, or a count clipped at max_count)."""
    lo, hi = model.outcome.span
    clipped = np.clip(y, lo, hi)
    if model.family is Family.GAUSSIAN:
        scaled: NDArray[np.float64] = (clipped - (lo + hi) / 2.0) / ((hi - lo) / 2.0)
        return scaled
    return clipped


def disclosure_checks(design: Design, model: RegressionModel, min_count: int) -> list[Reason]:
    """DataSHIELD's default checks before any release (ds.glm): enough persons, parameters at
    most 0.33 × n, every level of a binary covariate (and of a binary outcome) held by at
    least the minimum count, and a model that is not saturated (more distinct covariate
    patterns than parameters, a design of full rank)."""
    n, p = design.x.shape
    reasons = []
    if n < max(min_count, MIN_REGRESSION_PERSONS):
        reasons.append(_refusal(RegressionRefusal.TOO_FEW_PERSONS, "the cohort is too small"))
        return reasons
    if p > MAX_PARAMETER_SHARE * n:
        reasons.append(
            _refusal(
                RegressionRefusal.TOO_MANY_PARAMETERS,
                f"more parameters than {MAX_PARAMETER_SHARE} × the cohort's persons",
            )
        )
    columns = [design.x[:, j] for j in design.binary]
    if model.outcome.kind is OutcomeKind.EVENT:
        columns.append(design.y)
    for column in columns:
        ones = int(np.count_nonzero(column))
        if min(ones, n - ones) < min_count:
            reasons.append(
                _refusal(
                    RegressionRefusal.SPARSE_LEVEL,
                    "a level of a binary term is held by fewer persons than the minimum count",
                )
            )
            break
    patterns = len(np.unique(design.x, axis=0))
    if patterns <= p or np.linalg.matrix_rank(design.x) < p:
        reasons.append(
            _refusal(
                RegressionRefusal.SATURATED,
                "the model is saturated or a term is a combination of the others",
            )
        )
    return reasons


def _refusal(rule: RegressionRefusal, message: str) -> Reason:
    return Reason(rule=rule.value, message=message)


def sufficient_statistics(
    design: Design, model: RegressionModel, beta: Sequence[float]
) -> tuple[Matrix, NDArray[np.float64], float]:
    """H = Σ wᵢxᵢxᵢ', v = Σ rᵢxᵢ and (Gaussian) Σyᵢ² at β, each person's wᵢ and rᵢ clipped to
    the model's public bounds (which bind only for a Poisson fit beyond max_count)."""
    x, y = design.x, design.y
    bounds = model.bounds
    eta = x @ np.asarray(beta, dtype=np.float64)
    if model.family is Family.GAUSSIAN:
        w = np.ones_like(y)
        r = y
    elif model.family is Family.BINOMIAL:
        mu = 1.0 / (1.0 + np.exp(-np.clip(eta, -700.0, 700.0)))
        w = mu * (1.0 - mu)
        r = y - mu
    else:
        mu = np.exp(np.clip(eta, -700.0, 700.0))
        w = np.minimum(mu, bounds.weight)
        r = np.clip(y - mu, -bounds.residual, bounds.residual)
    information: Matrix = (x * w[:, None]).T @ x
    score: NDArray[np.float64] = x.T @ r
    squares = float(y @ y) if model.family is Family.GAUSSIAN else 0.0
    return information, score, squares


def iteration_cost(noise: NoiseSource, model: RegressionModel, sums_sd: float) -> int:
    """What one iteration's sums cost each person counted, in the ledger's units, at the
    sd `sums_sd` (the count's sd times the iteration's noise scale)."""
    information_delta, score_delta, squares_delta = model.sensitivities()
    cost = units(noise.rho(sums_sd * information_delta, information_delta))
    cost += units(noise.rho(sums_sd * score_delta, score_delta))
    if model.family is Family.GAUSSIAN:
        cost += units(noise.rho(sums_sd * squares_delta, squares_delta))
    return cost


def to_units(values: Iterable[float]) -> list[int]:
    """Whole units of `RESOLUTION`, rounded to nearest: the integer samplers' domain."""
    return [round(v / RESOLUTION) for v in values]


def upper(matrix: Matrix) -> list[float]:
    p = matrix.shape[0]
    return [float(matrix[i, j]) for i in range(p) for j in range(i, p)]


def symmetric(entries: Sequence[float], p: int) -> list[list[float]]:
    """The full matrix of an upper triangle listed row by row."""
    full = [[0.0] * p for _ in range(p)]
    k = 0
    for i in range(p):
        for j in range(i, p):
            full[i][j] = full[j][i] = entries[k]
            k += 1
    return full


def sums_digest(
    count_digest: str, model: RegressionModel, beta: Sequence[float], noise_scale: float = 1.0
) -> str:
    """What makes two iterations one: the cohort (its count's canonical digest), the model,
    β exactly (floats written in full) and the noise scale (the same β at another scale is
    another release, charged at its own cost)."""
    content: dict[str, object] = {
        "cohort": count_digest,
        "model": model.model_dump(mode="json"),
        "beta": list(beta),
    }
    if noise_scale != 1.0:
        content["noise_scale"] = noise_scale
    payload = orjson.dumps(content)
    return "regression:" + hashlib.sha256(payload).hexdigest()


class RegressionService:
    """Answers `REGRESSION_PATH` beside a node's `QueryService`, sharing its permit check,
    policy, ledger, answer store, noise, database queue and audit trail."""

    def __init__(self, service: QueryService) -> None:
        self.service = service

    async def handle(
        self,
        *,
        authorization: str | None,
        body: bytes,
        approval_token: str | None = None,
        trace_parent: Context | None = None,
    ) -> RegressionPart:
        service = self.service
        started = time.perf_counter()
        trail = NodeTrail(service.audit, service.tracer, service.node_id, service.jurisdiction)
        with trail.query_span(trace_parent) as span:
            with trail.step("verify"):
                trail.caller = (await service.verifier.verify(authorization, body)).kid
            trail.forwarded = Forwarded.of(approval_token)
            try:
                part = await self._answer(trail, body, approval_token)
            except Exception as error:
                await trail.refused(error, span)
                raise
            await trail.answered(
                NodeResponse(
                    query_id=part.query_id,
                    jurisdiction=part.jurisdiction,
                    status=part.status,
                    reasons=part.reasons,
                    privacy=part.privacy,
                    elapsed_ms=(time.perf_counter() - started) * 1000,
                ),
                span,
            )
            return part

    async def _answer(
        self, trail: NodeTrail, body: bytes, approval_token: str | None
    ) -> RegressionPart:
        service = self.service
        policy = service.policies.current
        with trail.step("parse"):
            step = parse_step(body)
            request = trail.request = step.request
            check_jurisdiction(request, service.jurisdiction)
        with trail.step("approval"):
            approved = trail.approved = service.approvals.verify(approval_token, request)
        with trail.step("policy"):
            decision = node_decision(request, approved, policy)
        if not decision.allowed:
            return self._denied(step, [r.as_reason() for r in decision.reasons])
        profile = policy.profile
        async with contextlib.AsyncExitStack() as turn:
            with trail.step("queue"):
                # The database queue counts questions: the researcher's regressions wait their
                # turn among their own questions (`QueryService`).
                await turn.enter_async_context(service._queue.slot(approved.applicant.researcher))
            try:
                async with asyncio.timeout(service.query_timeout_s):
                    return await self._run(trail, step, approved.applicant, profile)
            except TimeoutError:
                raise QueryTimeout(
                    f"the regression ran longer than this node allows "
                    f"({service.query_timeout_s:g} s)"
                ) from None

    def _denied(self, step: RegressionStep, reasons: list[Reason]) -> RegressionPart:
        where = self.service.jurisdiction
        log.info(
            "refused regression %s: %s",
            step.request.query_id,
            ", ".join(sorted({r.rule for r in reasons})),
        )
        return RegressionPart(
            query_id=step.request.query_id,
            jurisdiction=self.service.jurisdiction,
            status=NodeStatus.DENIED,
            reasons=[r.model_copy(update={"jurisdiction": where}) for r in reasons],
        )

    async def _run(
        self,
        trail: NodeTrail,
        step: RegressionStep,
        applicant: ApplicantId,
        profile: DisclosureProfile,
    ) -> RegressionPart:
        service = self.service
        request, model = step.request, step.model
        accounts = accounts_of(
            applicant,
            researcher_cap=profile.rho_per_applicant,
            organisation_cap=profile.rho_per_organisation,
        )
        sd = profile.noise_sd(request.noise)
        release = await service.backend.data_release()
        shelf = Shelf(owner=accounts[-1].key, release=release, sd=sd)
        # The design's count: the cohort's (replayed from a count of it, or replaying for
        # one), or its complete cases' where measurement terms leave persons out.
        count_digest = complete_cases_digest(
            question_digest(request.query, (), MeasureKind.PERSON_COUNT), model
        )
        digest = sums_digest(count_digest, model, step.beta, step.noise_scale)
        p = len(model.parameters)
        information_delta, score_delta, squares_delta = model.sensitivities()
        # The sums' noise: the count's sd times the iteration's public scale (the count itself
        # is released at the count's sd, as any count of the cohort).
        sums_sd = sd * step.noise_scale
        sds = {
            "h": sums_sd * information_delta * RESOLUTION,
            "v": sums_sd * score_delta * RESOLUTION,
            "s": sums_sd * squares_delta * RESOLUTION,
        }
        stored = await service.answers.get(shelf, [count_digest, digest])
        await service.ledger.prepare(accounts)
        cost = 0
        if digest not in stored:
            with trail.step("population"):
                design = await self._design(request.query, model)
            with trail.step("checks"):
                refused = disclosure_checks(design, model, profile.min_count)
            if refused:
                return self._denied(step, refused)
            noise = service.noise
            gaussian = model.family is Family.GAUSSIAN
            cost = iteration_cost(noise, model, sums_sd)
            if count_digest not in stored:
                cost += units(noise.rho(sd))
            # What the rest of the fit may still cost: checked, not charged.
            reserve = sum(iteration_cost(noise, model, sd * scale) for scale in step.then)
            if cost + reserve > min(a.cap for a in accounts):
                raise QuestionTooCostly(
                    "this regression's iterations cost more than a person's privacy "
                    "budget: ask with coarser noise or fewer iterations"
                )
            with trail.step("ledger"):
                admitted = await service.ledger.admit(
                    accounts, design.persons, cost, reserve=reserve
                )
                design = design.only(admitted.counted)
                await service.ledger.flush()
            if not admitted.counted.all():
                # Persons out of budget left the design: the checks hold for what is summed
                # (the charges stay: they are never undone).
                refused = disclosure_checks(design, model, profile.min_count)
                if refused:
                    return self._denied(step, refused)
            with trail.step("protect"):
                information, score, squares = sufficient_statistics(design, model, step.beta)
                new: dict[str, StoredTable] = {}
                h = noise.draw(to_units(upper(information)), sums_sd * information_delta)
                v = noise.draw(to_units(score), sums_sd * score_delta)
                s = noise.draw(to_units([squares]), sums_sd * squares_delta) if gaussian else [0]
                cells: dict[tuple[str, ...], int] = {("s",): s[0]}
                cells |= {("h", str(k)): value for k, value in enumerate(h)}
                cells |= {("v", str(k)): value for k, value in enumerate(v)}
                new[digest] = StoredTable(cells)
                if count_digest not in stored:
                    (n,) = noise.draw([len(design.persons)], sd)
                    new[count_digest] = StoredTable({(): n})
                stored |= await service.answers.put(shelf, new)
        kept = stored[digest].cells
        h_values = [kept["h", str(k)] * RESOLUTION for k in range(p * (p + 1) // 2)]
        worst = {a.key: await service.ledger.worst_case(a) for a in accounts}
        return RegressionPart(
            query_id=request.query_id,
            jurisdiction=service.jurisdiction,
            status=NodeStatus.OK,
            n=released_n(stored[count_digest].cells[()], sd, profile),
            information=symmetric(h_values, p),
            score=[kept["v", str(k)] * RESOLUTION for k in range(p)],
            squares=kept["s",] * RESOLUTION if model.family is Family.GAUSSIAN else None,
            sd_information=sds["h"],
            sd_score=sds["v"],
            sd_squares=sds["s"] if model.family is Family.GAUSSIAN else 0.0,
            privacy=PrivacySpend(
                sigma=sd,
                question_rho=rho_of(cost),
                spent_rho=rho_of(worst[accounts[0].key]),
                cap_rho=rho_of(accounts[0].cap),
                organisation_spent_rho=rho_of(worst[accounts[1].key])
                if len(accounts) > 1
                else None,
                organisation_cap_rho=rho_of(accounts[1].cap) if len(accounts) > 1 else None,
                data_release=release,
            ),
        )

    async def _design(self, query: CohortQuery, model: RegressionModel) -> Design:
        """The cohort's design matrix, read from the database on the node."""
        rows = await self._rows(query)
        persons = person_indexes(np.asarray([int(r[0]) for r in rows], dtype=np.int64))
        ages = np.asarray([float(r[1]) for r in rows], dtype=np.float64)
        female = np.asarray([int(r[2]) == FEMALE_CONCEPT for r in rows], dtype=np.float64)
        columns: list[NDArray[np.float64]] = [np.ones(len(rows), dtype=np.float64)]
        binary: list[int] = []
        # Persons without a value of a measurement term leave the design (complete cases).
        valued = np.ones(len(rows), dtype=np.bool_)
        for covariate in model.covariates:
            if covariate.kind is CovariateKind.AGE:
                columns.append(scaled_age(ages, covariate.age_bounds))
                continue
            if covariate.measurement is not None:
                value, has = await self._measured(
                    query, covariate.measurement, covariate.window, rows
                )
                valued &= has
                span = covariate.span
                assert span is not None
                columns.append(scaled_age(value, span))
                continue
            binary.append(len(columns))
            if covariate.kind is CovariateKind.FEMALE:
                columns.append(female)
            else:
                assert covariate.event is not None
                members = await self._members(query, covariate.event, covariate.window)
                columns.append(np.isin(persons, members).astype(np.float64))
        outcome = model.outcome
        if outcome.kind is OutcomeKind.AGE:
            y = ages
        elif outcome.measurement is not None:
            y, has = await self._measured(query, outcome.measurement, outcome.window, rows)
            valued &= has
        else:
            assert outcome.event is not None
            y = np.zeros(len(rows), dtype=np.float64)
            top = 1 if outcome.kind is OutcomeKind.EVENT else outcome.max_count
            for k in range(1, top + 1):
                members = await self._members(query, outcome.event, outcome.window, k)
                if not len(members):
                    break
                y += np.isin(persons, members)
        design = Design(persons, np.column_stack(columns), scaled_outcome(y, model), tuple(binary))
        return design if valued.all() else design.only(valued)

    async def _measured(
        self,
        query: CohortQuery,
        measurement: NumericVariable,
        window: RelativeWindow,
        rows: Sequence[Row],
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Each cohort person's value of a measurement term, in the order of the cohort's
        `rows` (0 where they have none), and whether they have one."""
        statement = compile_measured(
            query, measurement, window, dialect=self.service.backend.dialect
        )
        values = measured_values(await self._execute(statement), measurement)
        persons = [int(r[0]) for r in rows]
        has = np.asarray([p in values for p in persons], dtype=np.bool_)
        value = np.asarray([values.get(p, 0.0) for p in persons], dtype=np.float64)
        return value, has

    async def _members(
        self, query: CohortQuery, event: EventSpec, window: RelativeWindow, at_least: int = 1
    ) -> NDArray[np.int64]:
        """The persons of the cohort with at least `at_least` events of `event` in `window`
        around their index date."""
        criteria = query.criteria
        term = RelativeCriterion(event=event, window=window, at_least=at_least)
        narrowed = query.model_copy(
            update={
                "criteria": Criteria.model_validate(
                    {**criteria.model_dump(), "relative": [*criteria.relative, term]}
                )
            }
        )
        rows = await self._rows(narrowed)
        return np.asarray([int(r[0]) for r in rows], dtype=np.int64)

    async def _rows(self, query: CohortQuery) -> list[Row]:
        backend = self.service.backend
        return await self._execute(compile_persons(query, dialect=backend.dialect))

    async def _execute(self, statement: SqlStatement) -> list[Row]:
        backend = self.service.backend
        resolver = self.service._resolver  # the node's one cache of its codes
        bound: list[object] = []
        for param in statement.params:
            if isinstance(param, ConceptSet):
                bound.append(list((await resolver.resolve(param)).ids))
            else:
                bound.append(param)
        rows = await backend.execute(SqlStatement(statement.sql, tuple(bound)))
        return rows


def released_n(noisy: int, sd: float, profile: DisclosureProfile) -> Value:
    """The cohort's count as counts are released: LOW below the minimum count, else the
    noisy value (rounded as the jurisdiction rounds), with its noise's sd."""
    if noisy < profile.min_count:
        return Value.low(
            Reason(rule=BELOW_MINIMUM, message=f"below the minimum of {profile.min_count}"),
            sd=sd,
        )
    base = profile.rounding_base
    rounded = base * round(noisy / base) if base > 1 else noisy
    return Value(
        value=rounded,
        status=ValueStatus.PERTURBED,
        sd=sd,
        bound=(base / 2) if base > 1 else None,
    )
