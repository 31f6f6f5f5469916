"""The query pipeline: verify → parse → check the node → decide (the node's own legal policy)
→ a pooled round's form (`connectors.pooling`) → compile → resolve codes (a code the node's
vocabulary does not hold ends the question here, as UNKNOWN_CODE) → the cohort's
persons → the ledger (who can still be counted, and what the question costs) → the tables of
those persons → noise (or pooled shares), once, stored → release (or mask) → audit →
respond. Each step is small and a span of the query's trace; `QueryService.handle` only
strings them together (`connectors.node_trail` records them).

Waits for the disk overlap the database where they can: the stored answers are looked up
while the cohort's persons are listed, the ledger's charges written while the tables are
computed. Nothing leaves before the charges and the answers it depends on are on disk, and
no new answer is stored before its charges are (a stored answer is served again for free).

Counts exist unprotected only between the tables' statement and the noise, and are never
logged; person indexes only between the cohort and the ledger. No step refuses or marks
anything because of the data: a question is refused for its form (the node's policy, a
question costing more than the budget) or because the node cannot work, never for its
answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from opentelemetry.context import Context
from opentelemetry.trace import NoOpTracer, Tracer
from pydantic import ValidationError

from connectors.answers import AnswerStore, MemoryAnswers, Shelf, StoredTable
from connectors.approval import ApprovalVerifier, VerifiedApproval
from connectors.backends.base import Backend, CohortRun
from connectors.canonical import question_digest
from connectors.compiler import CompiledQuery, ConceptResolver, ConceptSet, Dialect, compile_query
from connectors.errors import BadRequest, QueryTimeout, QuestionTooCostly, WrongNode
from connectors.ledger import Account, Ledger, MemoryLedger, accounts_of, rho_of, units
from connectors.node_policy import NodePolicy
from connectors.node_trail import Forwarded, NodeTrail
from connectors.noise import DiscreteGaussian, NoiseSource
from connectors.pool_peers import PoolKeys
from connectors.pooling import PooledPart, check_round, claim_nonce
from connectors.population import population
from connectors.release import (
    ReleasedValues,
    counts_by_table,
    draw,
    full_table,
    released_table,
)
from connectors.vocabulary import look_up
from oversight.audit.log import AuditLog
from policies.decision import decide
from policies.disclosure import CellContext
from policies.live import LivePolicy
from policies.plan import QueryPlan
from policies.policy_set import EffectivePolicy
from policies.principal import ApprovalView, ResearcherView
from policies.profiles import DisclosureProfile
from policies.reasons import AccessDecision
from schema import telemetry as otel
from schema.approval import ApplicantId
from schema.codes import Jurisdiction, MeasureKind, NodeStatus
from schema.errors import TesseraError
from schema.fair_queue import FairBulkhead
from schema.measures import MEASURES, asked
from schema.pooling import PooledAnswer
from schema.query import Breakdown, CohortQuery
from schema.result import Reason
from schema.wire import (
    ConceptsRequest,
    ConceptsResponse,
    NodeRequest,
    NodeResponse,
    NodeTable,
    PrivacySpend,
    UnknownCode,
)
from trust.request_token import RequestVerifier

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_MESSAGE: Final = 300
# Questions waiting for the database at most; the gateways' bulkheads keep far fewer in flight.
MAX_WAITING: Final = 10_000
DEFAULT_QUERY_TIMEOUT_S: Final = 30.0


def parse_request(body: bytes) -> NodeRequest:
    try:
        return NodeRequest.model_validate_json(body)
    except ValidationError as exc:
        raise BadRequest(_summary(exc)) from None


def _summary(exc: ValidationError) -> str:
    # Only the first problem, without the offending input: short and safe to echo.
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"invalid request at {where}: {first['msg']}"[:MAX_MESSAGE]


def _background(work: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """`work` running on its own; awaiting the future raises its error. If the question fails
    before awaiting it, the work still completes, and its error is not reported as lost."""
    future = asyncio.ensure_future(work)
    future.add_done_callback(lambda done: None if done.cancelled() else done.exception())
    return future


def check_jurisdiction(request: NodeRequest, jurisdiction: Jurisdiction) -> None:
    if request.jurisdiction is not jurisdiction:
        raise WrongNode(
            f"this node answers for {jurisdiction.value}, not {request.jurisdiction.value}"
        )


class CompileCache:
    """Compiled queries by their exact JSON: the gateway repeats questions, and compiling
    costs a few milliseconds of sqlglot tree building and generation."""

    def __init__(self, dialect: Dialect, *, max_entries: int = 256) -> None:
        self._dialect = dialect
        self._max_entries = max_entries
        self._entries: OrderedDict[str, CompiledQuery] = OrderedDict()

    def compile(self, query: CohortQuery) -> CompiledQuery:
        key = query.model_dump_json()
        compiled = self._entries.get(key)
        if compiled is None:
            compiled = compile_query(query, dialect=self._dialect)
            self._entries[key] = compiled
            if len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return compiled


def node_decision(
    request: NodeRequest, approved: VerifiedApproval, policy: NodePolicy
) -> AccessDecision:
    """The node's own decision under its jurisdiction's layers and its node layer, about the
    approval as its own HDAB's key verified it, and the datasets this node serves. Opt-outs
    are applied by construction: the compiler excludes the register from every cohort."""
    jurisdiction = request.jurisdiction
    return decide(
        ResearcherView(subject=approved.subject),
        ApprovalView.from_approval(approved.approval),
        QueryPlan.of_node_request(request, datasets=policy.datasets),
        {jurisdiction: policy.policy},
        now=dt.datetime.now(dt.UTC),
        optout_applied=True,
    )[jurisdiction]


@dataclass(frozen=True, slots=True)
class NodeQuestion:
    """What the ledger and the answer store need to know about one question: its tables and
    measures, each table's values of each measure by canonical digest, the noise it is asked
    with, whose budgets pay for it and on whose shelf its answers are kept."""

    tables: tuple[Breakdown, ...]
    measures: tuple[MeasureKind, ...]
    digests: Mapping[tuple[Breakdown, MeasureKind], str]
    sd: float
    accounts: tuple[Account, ...]
    shelf: Shelf
    # Each measure's sensitivity for this question (`schema.measures`).
    sensitivities: Mapping[MeasureKind, int]

    def sd_of(self, kind: MeasureKind) -> float:
        """The noise sd of a measure's values: the question's, times the measure's
        sensitivity (a count's: the question's)."""
        return self.sd * self.sensitivities[kind]

    @property
    def sds(self) -> dict[MeasureKind, float]:
        return {kind: self.sd_of(kind) for kind in self.measures}

    @classmethod
    def of(
        cls,
        request: NodeRequest,
        applicant: ApplicantId,
        profile: DisclosureProfile,
        release: str,
    ) -> NodeQuestion:
        accounts = accounts_of(
            applicant,
            researcher_cap=profile.rho_per_applicant,
            organisation_cap=profile.rho_per_organisation,
        )
        sd = profile.noise_sd(request.noise)
        query = request.query
        # The tables released nationally; a pooled round's others leave only as shares.
        tables = request.national_tables
        measures = asked(query)
        return cls(
            tables=tuple(tables),
            measures=measures,
            digests={
                (by, kind): question_digest(query, by, kind) for by in tables for kind in measures
            },
            sd=sd,
            accounts=accounts,
            sensitivities={kind: MEASURES[kind].sensitivity(query) for kind in measures},
            # Answers are an organisation's: its researchers asking the same question get the
            # same numbers (and the organisation's budget is what averaging would spend).
            shelf=Shelf(owner=accounts[-1].key, release=release, sd=sd),
        )

    def cost(self, new: Iterable[MeasureKind], noise: NoiseSource, pooled: int = 0) -> int:
        """What new tables of the measures `new` (one item a table), and new pooled tables
        costing `pooled`, cost each person counted, in ledger units: each table's measure
        with noise of its own sd (`sd_of`) at its sensitivity (`schema.measures`; a count's
        is one), as the noise's privacy map says: every statistic costs what a count does."""
        cost = (
            sum(units(noise.rho(self.sd_of(kind), self.sensitivities[kind])) for kind in new)
            + pooled
        )
        if cost > min(a.cap for a in self.accounts):
            raise QuestionTooCostly(
                f"{len(self.tables)} tables at noise sd {self.sd:g} (and any pooled) cost more "
                "than the privacy budget a person has: ask fewer tables, or coarser noise"
            )
        return cost


@dataclass(frozen=True, slots=True)
class Answered:
    tables: list[NodeTable]
    privacy: PrivacySpend
    pooled: PooledAnswer | None = None


class QueryService:
    """`policy` is the node's policy (its jurisdiction's layers and its own layer): a live
    one, reloaded while the node runs, or an effective policy that stays; each question reads
    it once, at its start. `ledger` and `answers` (in memory unless given) keep what every
    applicant has been told; `noise` draws the noise (OpenDP's discrete Gaussian unless
    given); `pool_keys` (none unless given) lets it take part in pooled rounds."""

    def __init__(
        self,
        *,
        jurisdiction: Jurisdiction,
        backend: Backend,
        verifier: RequestVerifier,
        approvals: ApprovalVerifier,
        policy: LivePolicy[NodePolicy] | EffectivePolicy,
        audit: AuditLog,
        ledger: Ledger | None = None,
        answers: AnswerStore | None = None,
        noise: NoiseSource | None = None,
        node_id: str | None = None,
        tracer: Tracer | None = None,
        query_timeout_s: float = DEFAULT_QUERY_TIMEOUT_S,
        pool_keys: PoolKeys | None = None,
        workers: int = 2,
    ) -> None:
        self.jurisdiction = jurisdiction
        self.query_timeout_s = query_timeout_s
        self.backend = backend
        self.verifier = verifier
        self.approvals = approvals
        self.node_id = node_id or f"tessera-node-{jurisdiction.value.lower()}"
        self.policies = (
            policy
            if isinstance(policy, LivePolicy)
            else LivePolicy.fixed(NodePolicy.of(policy, self.node_id))
        )
        self.ledger: Ledger = ledger or MemoryLedger()
        self.answers: AnswerStore = answers or MemoryAnswers()
        self.noise: NoiseSource = noise or DiscreteGaussian()
        self.pool_keys = pool_keys
        self.audit = audit
        self.tracer = tracer or NoOpTracer()
        self._compiler = CompileCache(backend.dialect)
        self._resolver = ConceptResolver(backend.execute, dialect=backend.dialect)
        # Released values shared by every question's tables (`connectors.release`).
        self._released = ReleasedValues()
        # The database work of four questions per database worker at once, so that one
        # question's reads and writes of the ledger and the answers overlap another's
        # statements; one researcher holds at most half of them, and the others wait their
        # turn by researcher, never behind one researcher's burst (`schema.fair_queue`). How
        # many wait is bounded by the gateways (their own per-node bulkheads), how long by
        # the gateway's timeout.
        self._queue = FairBulkhead(
            max_in_flight=4 * workers, max_waiting=MAX_WAITING, per_applicant=2 * workers
        )

    async def handle(
        self,
        *,
        authorization: str | None,
        body: bytes,
        body_salt: str | None = None,
        approval_token: str | None = None,
        trace_parent: Context | None = None,
    ) -> NodeResponse:
        """Answer one signed request. Every verified request gets its audit entry before its
        answer or its error leaves (AUDIT_UNAVAILABLE when it cannot be written). `body_salt`
        is the request's `X-Tessera-Body-Salt`, which a question token needs."""
        started = time.perf_counter()
        trail = NodeTrail(self.audit, self.tracer, self.node_id, self.jurisdiction)
        with trail.query_span(trace_parent) as span:
            with trail.step("verify"):
                verified = await self.verifier.verify(authorization, body, salt=body_salt)
                trail.caller = verified.kid
            trail.forwarded = Forwarded.of(approval_token)
            try:
                response = await self._answer(trail, body, approval_token, started)
            except Exception as error:
                await trail.refused(error, span)
                raise
            await trail.answered(response, span)
            return response

    def _refusal(self, request: NodeRequest, reasons: list[Reason], started: float) -> NodeResponse:
        log.info(
            "refused query %s (request %s): %s",
            request.query_id,
            request.request_id,
            ", ".join(sorted({r.rule for r in reasons})),
        )
        return NodeResponse(
            query_id=request.query_id,
            jurisdiction=self.jurisdiction,
            status=NodeStatus.DENIED,
            reasons=reasons,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )

    @property
    def policy(self) -> NodePolicy:
        """The policy in force now (a question keeps the one it started with)."""
        return self.policies.current

    async def _answer(
        self, trail: NodeTrail, body: bytes, approval_token: str | None, started: float
    ) -> NodeResponse:
        policy = self.policies.current
        with trail.step("parse"):
            request = trail.request = parse_request(body)
            check_jurisdiction(request, self.jurisdiction)
        with trail.step("approval"):
            # The gateway routes; it does not vouch for the approval: the node's own HDAB does.
            approved = trail.approved = self.approvals.verify(approval_token, request)
        with trail.step("policy") as span:
            decision = node_decision(request, approved, policy)
            span.set_attribute(otel.RULES_FIRED, sorted(decision.rules))
        if not decision.allowed:
            return self._refusal(request, [r.as_reason() for r in decision.reasons], started)
        secrets: dict[str, bytes] | None = None
        if request.pooling is not None:
            with trail.step("pooling"):
                # The round's form only: nothing is computed for a round the node refuses.
                secrets = check_round(
                    request.pooling,
                    node_id=self.node_id,
                    profile=policy.profile,
                    noise=request.noise,
                    keys=self.pool_keys,
                    query=request.query,
                )
                await claim_nonce(self.answers, request.pooling)
        with trail.step("compile") as span:
            compiled = self._compiler.compile(request.query)
            trail.sql_fingerprint = compiled.fingerprint
            span.set_attribute(otel.SQL_FINGERPRINT, compiled.fingerprint)
        async with contextlib.AsyncExitStack() as turn:
            with trail.step("queue"):
                # Keyed by the researcher the node's own HDAB's permit names.
                await turn.enter_async_context(self._queue.slot(approved.applicant.researcher))
            try:
                # Cancelling the database work interrupts the running statement (see the
                # backend).
                async with asyncio.timeout(self.query_timeout_s):
                    with trail.step("codes"):
                        # The vocabulary tables only: whether a code is known is a public fact
                        # about the vocabulary, so an unknown one is said as such, before any
                        # person is looked at or charged for.
                        resolution = await self._resolver.resolution(compiled)
                    if resolution.unknown:
                        return self._unknown_codes(request, resolution.unknown, started)
                    answered = await self._run(
                        trail,
                        request,
                        approved.applicant,
                        resolution.query,
                        policy.profile,
                        secrets,
                    )
            except TimeoutError:
                log.warning(
                    "query %s interrupted after %.1f s", request.query_id, self.query_timeout_s
                )
                raise QueryTimeout(
                    f"the query ran longer than this node allows ({self.query_timeout_s:g} s)"
                ) from None
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info(
            "answered query %s (request %s, shape %s, %d tables) in %.1f ms",
            request.query_id,
            request.request_id,
            compiled.fingerprint,
            len(answered.tables),
            elapsed_ms,
        )
        return NodeResponse(
            query_id=request.query_id,
            jurisdiction=self.jurisdiction,
            status=NodeStatus.OK,
            tables=answered.tables,
            optout_register_version=trail.optout_register_version,
            privacy=answered.privacy,
            elapsed_ms=elapsed_ms,
            pooled=answered.pooled,
            vocabularies=list(resolution.vocabularies),
        )

    def _unknown_codes(
        self, request: NodeRequest, unknown: Sequence[ConceptSet], started: float
    ) -> NodeResponse:
        log.info(
            "query %s (request %s) names %d codes this node's vocabulary does not hold",
            request.query_id,
            request.request_id,
            len(unknown),
        )
        return NodeResponse(
            query_id=request.query_id,
            jurisdiction=self.jurisdiction,
            status=NodeStatus.UNKNOWN_CODE,
            reasons=[
                Reason(
                    rule=NodeStatus.UNKNOWN_CODE.value,
                    jurisdiction=self.jurisdiction,
                    message=f"{len(unknown)} code(s) of the question are not in this node's "
                    "vocabulary (see unknownCodes); nothing was computed or charged",
                )
            ],
            unknown_codes=[
                UnknownCode(vocabulary=c.vocabulary, code=c.code, to=c.to) for c in unknown
            ],
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )

    async def _run(
        self,
        trail: NodeTrail,
        request: NodeRequest,
        applicant: ApplicantId,
        compiled: CompiledQuery,
        profile: DisclosureProfile,
        secrets: Mapping[str, bytes] | None = None,
    ) -> Answered:
        """The database work on one connection of its own (the cohort's persons, then the
        tables of those the ledger still counts), with the ledger's decision in between.
        With `secrets`, the request's pooled tables are drawn as shares and masked."""
        async with contextlib.AsyncExitStack() as connection:
            with trail.step("population") as span:
                cohort: CohortRun = await connection.enter_async_context(
                    self.backend.cohort(compiled)
                )
                trail.optout_register_version = await cohort.optout_register_version()
                release = await cohort.data_release()
                span.set_attribute(otel.OPTOUT_REGISTER_VERSION, trail.optout_register_version)
                question = NodeQuestion.of(request, applicant, profile, release)
                pooled = None
                if request.pooling is not None and secrets is not None:
                    pooled = PooledPart.of(
                        request.pooling,
                        node_id=self.node_id,
                        secrets=secrets,
                        query=request.query,
                        owner=question.shelf.owner,
                        release=release,
                    )
                # Which tables are stored already is looked up, and the accounts' spend made
                # ready (a new applicant's files created), while the database lists the
                # cohort's persons.
                found = _background(
                    self.answers.get(question.shelf, list(question.digests.values()))
                )
                spent = _background(self.ledger.prepare(question.accounts))
                persons = population(self.ledger, cohort)
                await persons.compute()
            with trail.step("ledger"):
                stored = await found
                await spent
                new = {
                    digest: table
                    for table, digest in question.digests.items()
                    if digest not in stored
                }
                shares = {} if pooled is None else await pooled.stored(self.answers)
                new_shares = {} if pooled is None else pooled.new(shares)
                cost = question.cost(
                    [kind for _, kind in new.values()],
                    self.noise,
                    0 if pooled is None else pooled.cost(new_shares.values()),
                )
                worst = await persons.admit(question.accounts, cost)
            # The charges go to disk while the database computes the tables; nothing is
            # released before they are there.
            flushed = _background(persons.flush())
            if new or new_shares:
                with trail.step("sql") as span:
                    rows = await persons.tables()
                    span.set_attributes(
                        {
                            otel.SQL_FINGERPRINT: compiled.fingerprint,
                            otel.OPTOUT_REGISTER_VERSION: trail.optout_register_version,
                        }
                    )
        with trail.step("protect") as span:
            context = CellContext(profile, self.jurisdiction)

            def released(
                source: Mapping[str, StoredTable], tables: Iterable[Breakdown]
            ) -> dict[Breakdown, NodeTable]:
                digests = question.digests
                return {
                    by: released_table(
                        by,
                        {kind: source[digests[by, kind]] for kind in question.measures},
                        question.sd,
                        context,
                        self._released,
                        question.sds,
                        question.sensitivities,
                    )
                    for by in tables
                }

            # The tables whose every measure is stored: released as they were before.
            tables = released(
                stored,
                [
                    by
                    for by in question.tables
                    if all(question.digests[by, k] in stored for k in question.measures)
                ],
            )
            if new or new_shares:
                tabulated = compiled.tabulate(rows)
                del rows
                counts = {kind: counts_by_table(tabulated, kind) for kind in question.measures}
                del tabulated
                full = {
                    d: full_table(by, counts[kind][by], request.query)
                    for d, (by, kind) in new.items()
                }
                drawn_shares: dict[str, StoredTable] = {}
                if pooled is not None and new_shares:
                    drawn_shares = pooled.draw(
                        {
                            d: full_table(by, counts[pooled.measure][by], request.query)
                            for d, by in new_shares.items()
                        },
                        self.noise,
                    )
                del counts
                drawn = draw(
                    full, {d: question.sd_of(kind) for d, (_, kind) in new.items()}, self.noise
                )
                del full
                # A draw is stored only once its charges are on disk: a stored answer is
                # served again without a charge, also after a crash of the node, so its
                # charges must never be lost while it is kept. (The flush has usually
                # finished during the SQL.)
                await flushed
                if pooled is not None and drawn_shares:
                    shares |= await self.answers.put(pooled.shelf, drawn_shares)
                del drawn_shares
                if drawn:
                    # Stored first, then released: as drawn, or as a racing question stored
                    # them first. Stored unsynced, which a crash of the process keeps; should
                    # a power failure lose them, asking again is charged again (the charges
                    # are synced before anything leaves; docs/protection.md, "Durability").
                    # Not released while being stored: the release would hold the GIL the
                    # store's worker thread needs (5 ms turns), and the unsynced write
                    # takes less than the release.
                    kept = await self.answers.put(question.shelf, drawn, synced=False)
                    rest = [by for by in question.tables if by not in tables]
                    tables |= released({**stored, **kept}, rest)
                del drawn
            await flushed
            answer = [tables[by] for by in question.tables]
            cells = [v for table in answer for v in table.values()]
            span.set_attributes(
                {
                    otel.CELLS_SUPPRESSED: sum(c.value is None for c in cells),
                    otel.RULES_FIRED: sorted({r.rule for c in cells for r in c.reasons}),
                }
            )
        masked = None
        if pooled is not None:
            with trail.step("mask"):
                masked = PooledAnswer.of(pooled.pooling, pooled.masked(shares))
            del shares
        spend = self._spend(question, cost, worst, release)
        return Answered(answer, spend, masked)

    def _spend(
        self, question: NodeQuestion, cost: int, worst: Mapping[str, int], release: str
    ) -> PrivacySpend:
        researcher = question.accounts[0]
        organisation = question.accounts[1] if len(question.accounts) > 1 else None
        return PrivacySpend(
            sigma=question.sd,
            question_rho=rho_of(cost),
            spent_rho=rho_of(worst[researcher.key]),
            cap_rho=rho_of(researcher.cap),
            organisation_spent_rho=None
            if organisation is None
            else rho_of(worst[organisation.key]),
            organisation_cap_rho=None if organisation is None else rho_of(organisation.cap),
            data_release=release,
        )

    async def concepts(self, *, authorization: str | None, body: bytes) -> ConceptsResponse:
        """What this node's vocabulary holds of the codes asked (`connectors.vocabulary`):
        a request the gateway signed, as a query is; no permit, no ledger, no noise, since
        nothing about a person is read."""
        await self.verifier.verify(authorization, body)
        try:
            request = ConceptsRequest.model_validate_json(body)
        except ValidationError as exc:
            raise BadRequest(_summary(exc)) from None
        if request.jurisdiction is not self.jurisdiction:
            raise WrongNode(
                f"this node answers for {self.jurisdiction.value}, not {request.jurisdiction.value}"
            )
        try:
            async with asyncio.timeout(self.query_timeout_s):
                found = await look_up(
                    request.codes,
                    self._resolver,
                    self.backend.execute,
                    dialect=self.backend.dialect,
                )
        except TimeoutError:
            raise QueryTimeout(
                f"the look-up ran longer than this node allows ({self.query_timeout_s:g} s)"
            ) from None
        return ConceptsResponse(jurisdiction=self.jurisdiction, concepts=found)

    def readiness_checks(self) -> dict[str, Callable[[], Awaitable[str | None]]]:
        """What must hold for the node to answer, by name, each saying why not (`/readyz`
        lists every one that fails): the gateway's keys and the HDAB's loaded, the audit
        trail signed and readable, the database answering. (The disclosure policy is loaded
        when the service is made: without one the node does not start.)"""
        return {
            "gateway_keys": self._gateway_keys_ready,
            "hdab_keys": self._hdab_keys_ready,
            "audit": self._audit_ready,
            "database": self._database_ready,
        }

    async def not_ready_reason(self) -> str | None:
        """Why the node cannot answer now (the first failing check), or None when it can."""
        for check in self.readiness_checks().values():
            reason = await check()
            if reason is not None:
                return reason
        return None

    async def _gateway_keys_ready(self) -> str | None:
        return None if self.verifier.has_keys else "no gateway public key is configured"

    async def _hdab_keys_ready(self) -> str | None:
        if self.approvals.has_keys:
            return None
        return "no HDAB key is configured or loaded to verify approvals with"

    async def _audit_ready(self) -> str | None:
        if not self.audit.signs_heads:
            return "no audit signing key is configured"
        try:
            await self.audit.store.head(self.audit.chain)
        except TesseraError as exc:
            return f"the audit trail cannot be read: {exc.message}"
        return None

    async def _database_ready(self) -> str | None:
        try:
            await self.backend.ping()
        except TesseraError as exc:
            return exc.message
        return None
