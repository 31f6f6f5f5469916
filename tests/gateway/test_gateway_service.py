"""The gateway's pipeline (`gateway.service`) asked directly, without GraphQL: one
`CohortQuestion`, a `Caller` of the test's own, the shipped fakes for the nodes
(`MockNodeClient`), the rate limiter's clock and the audit store. (The spans of each step are
checked through GraphQL, in test_gateway_schema.)"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from opentelemetry.sdk.trace import TracerProvider

from gateway.auth import Authenticator, Principal
from gateway.federation import NodeInfo, load_federation
from gateway.latency import WHOLE_DEADLINE
from gateway.nodes import MockNodeClient
from gateway.permits import PermitVerifier, Presented
from gateway.planner import cohort_cost
from gateway.ratelimit import LimitPolicy, Limits, MemoryRateLimiter, RateGuard
from gateway.service import CohortQuestion, Services, answer_cohort
from oversight.audit.log import AuditLog
from oversight.audit.store import MemoryAuditStore
from policies.live import LivePolicy
from schema.codes import Jurisdiction, NodeStatus, ValueStatus, Vocabulary
from schema.errors import ErrorCode, TesseraError
from schema.wire import NodeRequest
from tests.gateway.gateway_kit import (
    DEFAULT_COUNTS,
    MEMBERS,
    POLICIES,
    REQUEST_ID,
    SEX,
    SUBJECT,
    Keys,
    counts_handler,
    identity_token,
    node_response,
    permit,
    write_hdab_federation,
)
from trust.tokens import TokenVerifier

FR, DK, NO = MEMBERS
CHAIN = "gateway:test"
QUESTION = CohortQuestion(
    request=REQUEST_ID,
    criteria={"sex": "FEMALE"},
    tables=((), SEX),
    pool_total=True,
    per_country=True,
)


def total(**changes: Any) -> CohortQuestion:
    """Everyone's total, with `changes`."""
    return replace(QUESTION, **{"criteria": {}, "tables": (), **changes})


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Place:
    freed: bool = False

    def free(self) -> None:
        self.freed = True


@dataclass
class Caller:
    """A caller as an HTTP request brings it: credentials verified by the gateway's own
    verifiers, places and a budget counted here."""

    services: Services
    authorization: str | None
    permits: list[str]
    budget: int = 10_000
    places: list[Place] = field(default_factory=list)
    charged: list[int] = field(default_factory=list)

    def principal(self) -> Principal:
        return self.services.authenticator.authenticate(self.authorization)

    def presented(self) -> Presented:
        return self.services.permits.present(self.principal(), self.permits)

    def admit_cohort(self) -> Place:
        self.places.append(Place())
        return self.places[-1]

    def charge(self, cost: int) -> None:
        if sum(self.charged) + cost > self.budget:
            raise TesseraError("too costly", code=ErrorCode.QUERY_TOO_COMPLEX)
        self.charged.append(cost)


@dataclass
class Gateway:
    services: Services
    nodes: MockNodeClient
    store: MemoryAuditStore
    clock: Clock

    def caller(self, *permits: str, authorization: str | None = None, **kw: Any) -> Caller:
        bearer = authorization or f"Bearer {identity_token()}"
        return Caller(self.services, bearer, list(permits), **kw)

    def entries(self) -> list[Any]:
        return self.store.rows.get(CHAIN, [])


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    keys = Keys(gateway=Ed25519PrivateKey.generate(), hdab=Ed25519PrivateKey.generate())
    federation = load_federation(write_hdab_federation(tmp_path, keys))
    nodes = MockNodeClient(counts_handler())
    store = MemoryAuditStore()
    provider = TracerProvider()
    clock = Clock()
    services = Services(
        federation=federation,
        authenticator=Authenticator(audience=federation.gateway_id, issuers=federation.issuers),
        node_client=nodes,
        policies=LivePolicy.fixed(POLICIES),
        permits=PermitVerifier(
            TokenVerifier(audience=federation.gateway_id, issuers=federation.issuers.values())
        ),
        rate_guard=RateGuard(
            MemoryRateLimiter(clock=clock),
            LimitPolicy(default=Limits(60, 1000), cap=Limits(2, 1000)),
        ),
        deadline_s=2.0,
        node_timeouts=WHOLE_DEADLINE,
        max_query_cost=10_000,
        audit=AuditLog(store, CHAIN, signing_key=None),
        # A real tracer: the answer carries its trace id.
        tracer=provider.get_tracer("test"),
    )
    return Gateway(services, nodes, store, clock)


def all_permits() -> list[str]:
    return [permit(j) for j in MEMBERS]


async def test_a_question_is_answered_by_every_node_audited_and_its_place_freed(
    gateway: Gateway,
) -> None:
    caller = gateway.caller(*all_permits())
    answer = await answer_cohort(gateway.services, caller, QUESTION)

    assert {c.node.jurisdiction for c in gateway.nodes.calls} == set(MEMBERS)
    assert len(gateway.nodes.calls) == len(MEMBERS)
    assert {c.request.query == answer.plan.node_query for c in gateway.nodes.calls} == {True}
    assert [n.status for n in answer.combined.by_jurisdiction] == [NodeStatus.OK] * 3
    assert answer.combined.count.status is ValueStatus.PERTURBED
    assert answer.combined.count.value == sum(DEFAULT_COUNTS[j][()] for j in MEMBERS)
    assert list(answer.combined.tables) == [(), SEX]
    assert answer.plan.subject == SUBJECT
    # Its place in the researcher's share is freed, and the budget charged what it costs.
    assert [p.freed for p in caller.places] == [True]
    assert caller.charged == [cohort_cost(answer.plan)]
    (entry,) = gateway.entries()
    assert (entry.query_id, entry.decision, entry.principal, entry.approval) == (
        answer.plan.query_id,
        "ANSWERED",
        SUBJECT,
        REQUEST_ID,
    )
    assert answer.trace_id is not None


async def test_the_question_s_arguments_reach_the_plan_and_the_nodes(gateway: Gateway) -> None:
    question = total(
        criteria={"conditions": [{"vocabulary": Vocabulary.ICD10, "code": " e119 "}]},
        jurisdictions=(FR, DK),
    )
    answer = await answer_cohort(gateway.services, gateway.caller(*all_permits()), question)
    assert set(answer.plan.jurisdictions) == {FR, DK}
    assert sorted(c.node.jurisdiction for c in gateway.nodes.calls) == sorted([FR, DK])
    (condition,) = answer.plan.node_query.criteria.conditions
    assert condition.code == "E11.9"


async def test_without_a_permit_nothing_is_asked_and_the_refusal_is_audited(
    gateway: Gateway,
) -> None:
    caller = gateway.caller()
    with pytest.raises(TesseraError) as refused:
        await answer_cohort(gateway.services, caller, QUESTION)
    assert refused.value.code is ErrorCode.FORBIDDEN
    assert gateway.nodes.calls == []
    assert caller.places == []
    assert caller.charged == []
    (entry,) = gateway.entries()
    assert (entry.decision, entry.principal, entry.approval) == ("REFUSED", SUBJECT, None)


async def test_a_caller_without_a_valid_token_is_refused_and_not_audited(
    gateway: Gateway,
) -> None:
    caller = gateway.caller(*all_permits(), authorization="Bearer nonsense")
    with pytest.raises(TesseraError) as refused:
        await answer_cohort(gateway.services, caller, QUESTION)
    assert refused.value.code is ErrorCode.TOKEN_MALFORMED
    assert gateway.entries() == []
    assert gateway.nodes.calls == []


async def test_a_malformed_code_is_refused_with_its_path_and_audited(gateway: Gateway) -> None:
    question = total(
        criteria={"any_of": [{"drugs": [{"vocabulary": Vocabulary.ATC, "code": "A10'--"}]}]}
    )
    with pytest.raises(TesseraError) as refused:
        await answer_cohort(gateway.services, gateway.caller(*all_permits()), question)
    assert refused.value.code is ErrorCode.INVALID_CODE
    assert refused.value.details["path"] == "criteria.anyOf[0].drugs[0].code"
    assert "A10'" not in refused.value.message
    assert [e.decision for e in gateway.entries()] == ["REFUSED"]


async def test_a_request_no_permit_names_is_refused_with_the_plan_recorded(
    gateway: Gateway,
) -> None:
    question = total(request="DR-2026-0099")
    with pytest.raises(TesseraError) as refused:
        await answer_cohort(gateway.services, gateway.caller(*all_permits()), question)
    assert refused.value.code is ErrorCode.REQUEST_MISMATCH
    (entry,) = gateway.entries()
    assert entry.approval == "DR-2026-0099"


async def test_a_jurisdiction_without_its_permit_is_denied_and_never_asked(
    gateway: Gateway,
) -> None:
    answer = await answer_cohort(gateway.services, gateway.caller(permit(FR), permit(DK)), QUESTION)
    assert sorted(c.node.jurisdiction for c in gateway.nodes.calls) == sorted([FR, DK])
    statuses = {n.jurisdiction: n.status for n in answer.combined.by_jurisdiction}
    assert statuses == {FR: NodeStatus.OK, DK: NodeStatus.OK, NO: NodeStatus.DENIED}
    assert [e.decision for e in gateway.entries()] == ["PARTIAL"]


async def test_the_request_s_budget_refuses_a_question_before_anything_is_asked(
    gateway: Gateway,
) -> None:
    caller = gateway.caller(*all_permits(), budget=1)
    with pytest.raises(TesseraError) as refused:
        await answer_cohort(gateway.services, caller, QUESTION)
    assert refused.value.code is ErrorCode.QUERY_TOO_COMPLEX
    assert gateway.nodes.calls == []
    # The place it took is freed once its refusal is recorded.
    assert [p.freed for p in caller.places] == [True]
    assert [e.decision for e in gateway.entries()] == ["REFUSED"]


async def test_rate_limits_refuse_until_the_clock_refills_them(gateway: Gateway) -> None:
    # Two questions a minute per researcher and jurisdiction (the fixture's cap).
    for _ in range(2):
        await answer_cohort(gateway.services, gateway.caller(*all_permits()), QUESTION)
    with pytest.raises(TesseraError) as refused:
        await answer_cohort(gateway.services, gateway.caller(*all_permits()), QUESTION)
    assert refused.value.code is ErrorCode.RATE_LIMITED
    assert len(gateway.nodes.calls) == 2 * len(MEMBERS)
    gateway.clock.now += 30  # one token back per jurisdiction
    await answer_cohort(gateway.services, gateway.caller(*all_permits()), QUESTION)
    assert [e.decision for e in gateway.entries()] == ["ANSWERED"] * 2 + ["REFUSED", "ANSWERED"]


async def test_a_quorum_not_met_fails_after_the_nodes_and_is_audited(gateway: Gateway) -> None:
    def handler(node: NodeInfo, request: NodeRequest) -> Any:
        if node.jurisdiction is NO:
            raise ConnectionError("down")
        return node_response(request, DEFAULT_COUNTS[node.jurisdiction])

    gateway.nodes.handler = handler
    question = total(min_nodes=3)
    with pytest.raises(TesseraError) as refused:
        await answer_cohort(gateway.services, gateway.caller(*all_permits()), question)
    assert refused.value.code is ErrorCode.QUORUM_NOT_MET
    assert refused.value.details["nodes"] == {"FR": "OK", "DK": "OK", "NO": "UNAVAILABLE"}
    assert [e.decision for e in gateway.entries()] == ["REFUSED"]


@pytest.mark.parametrize(
    ("argument", "value"), [("min_nodes", 4), ("min_share", 0.0), ("deadline_ms", 1)]
)
async def test_invalid_deadlines_and_quorums_are_refused_before_any_node_is_asked(
    gateway: Gateway, argument: str, value: Any
) -> None:
    question = total(**{argument: value})
    with pytest.raises(TesseraError) as refused:
        await answer_cohort(gateway.services, gateway.caller(*all_permits()), question)
    assert refused.value.code is ErrorCode.INVALID_ARGUMENT
    assert gateway.nodes.calls == []


async def test_the_jurisdictions_asked_must_be_members(gateway: Gateway) -> None:
    question = total(jurisdictions=(Jurisdiction.DE,))
    with pytest.raises(TesseraError) as refused:
        await answer_cohort(gateway.services, gateway.caller(*all_permits()), question)
    assert refused.value.code is ErrorCode.UNKNOWN_JURISDICTION
