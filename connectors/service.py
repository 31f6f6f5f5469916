"""The query pipeline: verify → parse → check the node → decide (the node's own legal policy)
→ compile → resolve codes → guard against differencing → execute → protect → audit →
respond. Each step is small and a span of the query's trace; `QueryService.handle` only
strings them together (`connectors.audit` records them).

Counts exist unprotected only between `execute` and `protect_tables`, and are never logged;
person ids exist only between the population statement and the differencing guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Final

from opentelemetry.context import Context
from opentelemetry.trace import NoOpTracer, Tracer
from pydantic import ValidationError

from connectors.approval import ApprovalVerifier, VerifiedApproval
from connectors.audit import Forwarded, NodeTrail
from connectors.backends.base import Backend
from connectors.compiler import CompiledQuery, ConceptResolver, Row, compile_query
from connectors.compiler.compiled import TableRows
from connectors.errors import BadRequest, QueryTimeout, WrongNode
from connectors.history import MemoryHistory, PopulationHistory, population_of
from connectors.node_policy import NodePolicy
from connectors.verify import RequestVerifier
from policies import disclosure
from policies.decision import decide
from policies.live import LivePolicy
from policies.plan import QueryPlan
from policies.policy_set import EffectivePolicy
from policies.principal import ApprovalView, Principal
from policies.profiles import DisclosureProfile
from policies.reasons import Decision
from policies.tables import TableCell, TableSet
from schema import telemetry as otel
from schema.audit.log import AuditLog
from schema.codes import Jurisdiction, NodeStatus, ValueStatus
from schema.errors import TesseraError
from schema.query import CohortQuery
from schema.result import Reason, Value
from schema.wire import NodeCell, NodeRequest, NodeResponse, NodeTable

log = logging.getLogger(__name__)

MAX_MESSAGE: Final = 300
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


def check_node(request: NodeRequest, jurisdiction: Jurisdiction) -> None:
    if request.jurisdiction is not jurisdiction:
        raise WrongNode(
            f"this node answers for {jurisdiction.value}, not {request.jurisdiction.value}"
        )


def protect_tables(
    tables: Sequence[TableRows], profile: DisclosureProfile, jurisdiction: Jurisdiction
) -> list[NodeTable]:
    """All tables of the answer through the node's disclosure pipeline at once (cell rules,
    then secondary suppression over the tables and their margins). A suppressed cell stays
    listed (value null, with its reason): the gateway learns the cell exists, not its count."""
    protected = disclosure.protect_tables(
        TableSet(
            {
                by: {
                    cell.key: TableCell(
                        Value.exact(cell.persons), profile, jurisdiction, cell.cell_key
                    )
                    for cell in cells
                }
                for by, cells in tables
            }
        )
    )
    return [
        NodeTable(
            by=by,
            cells=[
                NodeCell(key=list(cell.key), count=protected.tables[by][cell.key].value)
                for cell in cells
            ],
        )
        for by, cells in tables
    ]


class CompileCache:
    """Compiled queries by their exact JSON: the gateway repeats questions, and compiling
    costs a few milliseconds of sqlglot tree building and generation."""

    def __init__(self, dialect: str, *, max_entries: int = 256) -> None:
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


def node_decision(request: NodeRequest, approved: VerifiedApproval, policy: NodePolicy) -> Decision:
    """The node's own decision under its jurisdiction's layers and its node layer, about the
    approval as its own HDAB's key verified it, and the datasets this node serves. Opt-outs
    are applied by construction: the compiler excludes the register from every cohort."""
    jurisdiction = request.jurisdiction
    return decide(
        Principal(subject=approved.subject),
        ApprovalView.from_approval(approved.approval),
        QueryPlan.of_node_request(request, datasets=policy.datasets),
        {jurisdiction: policy.policy},
        now=dt.datetime.now(dt.UTC),
        optout_applied=True,
    )[jurisdiction]


class QueryService:
    """`policy` is the node's policy (its jurisdiction's layers and its own layer): a live
    one, reloaded while the node runs, or an effective policy that stays; each question reads
    it once, at its start. `history`, the differencing guard's memory, defaults to one in
    memory."""

    def __init__(
        self,
        *,
        jurisdiction: Jurisdiction,
        backend: Backend,
        verifier: RequestVerifier,
        approvals: ApprovalVerifier,
        policy: LivePolicy[NodePolicy] | EffectivePolicy,
        audit: AuditLog,
        history: PopulationHistory | None = None,
        node_id: str | None = None,
        tracer: Tracer | None = None,
        query_timeout_s: float = DEFAULT_QUERY_TIMEOUT_S,
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
        self.history: PopulationHistory = history or MemoryHistory()
        self.audit = audit
        self.tracer = tracer or NoOpTracer()
        self._compiler = CompileCache(backend.dialect)
        self._resolver = ConceptResolver(backend.execute, dialect=backend.dialect)

    async def handle(
        self,
        *,
        authorization: str | None,
        body: bytes,
        approval_token: str | None = None,
        trace_parent: Context | None = None,
    ) -> NodeResponse:
        """Answer one signed request. Every verified request gets its audit entry before its
        answer or its error leaves (AUDIT_UNAVAILABLE when it cannot be written)."""
        started = time.perf_counter()
        trail = NodeTrail(self.audit, self.tracer, self.node_id, self.jurisdiction)
        with trail.query_span(trace_parent) as span:
            with trail.step("verify"):
                trail.caller = (await self.verifier.verify(authorization, body)).kid
            trail.forwarded = Forwarded.of(approval_token)
            try:
                response = await self._answer(trail, body, approval_token, started)
            except Exception as error:
                await trail.refused(error, span)
                raise
            await trail.answered(response, span)
            return response

    def _refusal(
        self, request: NodeRequest, reasons: list[Reason], started: float, **fields: Any
    ) -> NodeResponse:
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
            **fields,
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
            check_node(request, self.jurisdiction)
        with trail.step("approval"):
            # The gateway routes; it does not vouch for the approval: the node's own HDAB does.
            approved = trail.approved = self.approvals.verify(approval_token, request)
        with trail.step("policy") as span:
            decision = node_decision(request, approved, policy)
            span.set_attribute(otel.RULES_FIRED, sorted(decision.rules))
        if not decision.allowed:
            return self._refusal(request, [r.as_reason() for r in decision.reasons], started)
        with trail.step("compile") as span:
            compiled = self._compiler.compile(request.query)
            trail.sql_fingerprint = compiled.fingerprint
            span.set_attribute(otel.SQL_FINGERPRINT, compiled.fingerprint)
        try:
            # Cancelling the database work interrupts the running statement (see the backend).
            async with asyncio.timeout(self.query_timeout_s):
                refusal, rows = await self._run(trail, request, compiled, policy.profile)
        except TimeoutError:
            log.warning("query %s interrupted after %.1f s", request.query_id, self.query_timeout_s)
            raise QueryTimeout(
                f"the query ran longer than this node allows ({self.query_timeout_s:g} s)"
            ) from None
        if refusal is not None:
            return self._refusal(
                request,
                [refusal],
                started,
                optout_register_version=trail.optout_register_version,
            )
        with trail.step("protect") as span:
            tables = protect_tables(compiled.tabulate(rows), policy.profile, self.jurisdiction)
            cells = [cell.count for table in tables for cell in table.cells]
            span.set_attributes(
                {
                    otel.CELLS_SUPPRESSED: sum(c.status is ValueStatus.SUPPRESSED for c in cells),
                    otel.RULES_FIRED: sorted({r.rule for c in cells for r in c.reasons}),
                }
            )
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info(
            "answered query %s (request %s, shape %s, %d tables) in %.1f ms",
            request.query_id,
            request.request_id,
            compiled.fingerprint,
            len(tables),
            elapsed_ms,
        )
        return NodeResponse(
            query_id=request.query_id,
            jurisdiction=self.jurisdiction,
            status=NodeStatus.OK,
            tables=tables,
            optout_register_version=trail.optout_register_version,
            elapsed_ms=elapsed_ms,
        )

    async def _run(
        self,
        trail: NodeTrail,
        request: NodeRequest,
        compiled: CompiledQuery,
        profile: DisclosureProfile,
    ) -> tuple[Reason | None, list[Row]]:
        """The database work, on one connection of its own: the cohort's population, the
        differencing guard over it, then the tables of the same persons (not computed at all
        when the guard refuses)."""
        async with contextlib.AsyncExitStack() as connection:
            with trail.step("population") as span:
                bound = await self._resolver.bind(compiled)
                cohort = await connection.enter_async_context(self.backend.cohort(bound))
                trail.optout_register_version = await cohort.optout_register_version()
                span.set_attribute(otel.OPTOUT_REGISTER_VERSION, trail.optout_register_version)
                population = population_of(await cohort.persons())
            with trail.step("differencing_guard") as span:
                refusal = await self.history.check_and_record(
                    request.request_id, population, profile, self.jurisdiction
                )
                del population
                span.set_attribute(otel.RULES_FIRED, [refusal.rule] if refusal else [])
            if refusal is not None:
                return refusal, []
            with trail.step("sql") as span:
                rows = await cohort.tables()
                span.set_attributes(
                    {
                        otel.SQL_FINGERPRINT: compiled.fingerprint,
                        otel.OPTOUT_REGISTER_VERSION: trail.optout_register_version,
                    }
                )
        return None, rows

    async def not_ready_reason(self) -> str | None:
        """Why the node cannot answer now, or None when it can: the gateway's keys must be
        loaded and the database must answer. (The disclosure policy is loaded when the
        service is made: without one the node does not start.)"""
        if not self.verifier.has_keys:
            return "no gateway public key is configured"
        if not self.approvals.has_keys:
            return "no HDAB key is configured or loaded to verify approvals with"
        if not self.audit.signs_heads:
            return "no audit signing key is configured"
        try:
            await self.audit.store.head(self.audit.chain)
        except TesseraError as exc:
            return f"the audit trail cannot be read: {exc.message}"
        try:
            await self.backend.ping()
        except TesseraError as exc:
            return exc.message
        return None
