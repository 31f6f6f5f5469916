"""Secure pooling at the gateway, against nodes that mask their shares as connectors do: who
takes part, the pooled count released while every country's own is LOW, a second round when
a participant drops out, the fallbacks, and the checks on what the nodes send."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from connectors.canonical import question_digest
from connectors.masking import masked, pair_secret
from gateway.access import decide_access
from gateway.combine import NOT_ASKED, Combined, combine
from gateway.federation import NodeInfo
from gateway.nodes import MockNodeClient, NodeOutcome, check_response
from gateway.permits import Permit, Presented
from gateway.planner import Plan, plan_query
from gateway.pool_guard import guard_pools
from gateway.pooling import (
    SECURE_POOL,
    national_tables,
    participants,
    plan_round,
    pooled_tables,
)
from gateway.query_trail import node_step, released_result
from gateway.rounds import Gathered, gather
from policies.domain import table_domain
from policies.profiles import DisclosureProfile
from schema.approval import Approval
from schema.codes import Dimension, Jurisdiction, MeasureKind, NodeStatus, ValueStatus
from schema.errors import ErrorCode
from schema.measures import MEASURES
from schema.pooling import PooledAnswer, encode_shares
from schema.query import Breakdown
from schema.result import Value
from schema.wire import NodeError, NodeRequest, NodeResponse
from tests.gateway.gateway_kit import POLICIES, REQUEST_ID, SUBJECT, Counts, node_response

FR, DE, DK, FI = Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.DK, Jurisdiction.FI
FOUR = (FR, DE, DK, FI)
SEX: Breakdown = (Dimension.SEX,)
BY_COUNTRY_SEX: Breakdown = (Dimension.JURISDICTION, Dimension.SEX)


def nodes(pools: Sequence[Jurisdiction] = FOUR) -> dict[Jurisdiction, NodeInfo]:
    return {
        j: NodeInfo(j, f"tessera-node-{j.value.lower()}", f"http://{j.value}", pools=j in pools)
        for j in FOUR
    }


PRIVATE = {
    n.node_id: X25519PrivateKey.from_private_bytes(hashlib.sha256(n.node_id.encode()).digest())
    for n in nodes().values()
}

# Every country below its minimum (FR 11, DE 3, DK 5, FI 10), together well above it.
RARE: dict[Jurisdiction, Counts] = {
    FR: {(): 9, SEX: {("FEMALE",): 5, ("MALE",): 4}},
    DE: {(): 2, SEX: {("FEMALE",): 1, ("MALE",): 1}},
    DK: {(): 4, SEX: {("FEMALE",): 2, ("MALE",): 2}},
    FI: {(): 8, SEX: {("FEMALE",): 6, ("MALE",): 2}},
}


class Nodes:
    """Nodes holding `counts` (with no noise, so the arithmetic shows) that answer a pooled
    round as a connector does. `fail` holds (jurisdiction, round) pairs whose request dies
    (round None: a request without pooling), `refuse` the nodes that refuse every round,
    `wrong` those that mask with another nonce than the round's."""

    def __init__(
        self,
        counts: Mapping[Jurisdiction, Counts] = RARE,
        *,
        fail: Sequence[tuple[Jurisdiction, int | None]] = (),
        refuse: Sequence[Jurisdiction] = (),
        wrong: Sequence[Jurisdiction] = (),
    ) -> None:
        self.counts, self.fail, self.refuse, self.wrong = counts, fail, refuse, wrong
        self.asked: list[tuple[Jurisdiction, NodeRequest]] = []

    def __call__(self, node: NodeInfo, request: NodeRequest) -> NodeResponse | NodeError:
        j, pooling = node.jurisdiction, request.pooling
        self.asked.append((j, request))
        if (j, None if pooling is None else pooling.round) in self.fail:
            raise ConnectionResetError("the node died mid-round")
        if pooling is not None and j in self.refuse:
            return NodeError(code=ErrorCode.POOL_REFUSED, message="this node stays out")
        response = node_response(request, self.counts[j])
        if pooling is None:
            return response
        me = node.node_id
        secrets = {
            p: pair_secret(PRIVATE[me], PRIVATE[p].public_key())
            for p in pooling.participants
            if p != me
        }
        shares = {}
        for by in pooling.tables:
            given = {(): self.counts[j][()]} if by == () else self.counts[j].get(by, {})
            values = [given.get(k, 0) for k in table_domain(by, request.query)]
            nonce = bytes(32) if j in self.wrong else pooling.nonce_bytes()
            shares[by] = masked(
                np.array(values, dtype=np.int64),
                own=me,
                secrets=secrets,
                nonce=nonce,
                participants=pooling.participants,
                digest=question_digest(request.query, by),
                round_number=pooling.round,
                sigma=pooling.sigma,
            )
        national = [t for t in response.tables if t.by in request.national_tables]
        assert response.privacy is not None
        spend = response.privacy.model_copy(update={"question_rho": 0.02 * len(shares)})
        return response.model_copy(
            update={
                "tables": national,
                "pooled": PooledAnswer.of(pooling, shares),
                "privacy": spend,
            }
        )

    def rounds(self) -> list[tuple[Jurisdiction, int | None]]:
        return [(j, None if r.pooling is None else r.pooling.round) for j, r in self.asked]


def make_plan(*tables: Breakdown, members: Sequence[Jurisdiction] = FOUR) -> Plan:
    return plan_query(
        subject=SUBJECT,
        members=list(members),
        request_id=REQUEST_ID,
        criteria={"conditions": [{"vocabulary": "ICD10", "code": "C49"}]},
        jurisdictions=None,
        reference_date=dt.date(2026, 1, 1),
        tables=list(tables),
    )


async def ask(
    handler: Nodes,
    *tables: Breakdown,
    pools: Sequence[Jurisdiction] = FOUR,
    members: Sequence[Jurisdiction] = FOUR,
    pool_total: bool = True,
    per_country: bool = True,
    tracer: Tracer | None = None,
) -> tuple[Gathered, Combined]:
    plan = make_plan(*tables, members=members)
    approval = Approval(request_id=REQUEST_ID, purpose="scientific_research", jurisdictions=FOUR)
    presented = Presented((Permit("iss", SUBJECT, approval, "token"),))
    access = decide_access(plan, presented, POLICIES, allowed=lambda issuer, j: True)
    gathered = await gather(
        MockNodeClient(handler),
        nodes(pools),
        plan,
        access.decisions,
        permits=access.permits,
        profiles=POLICIES.profile,
        deadline_s=5.0,
        pool_total=pool_total,
        per_country=per_country,
        tracer=tracer,
    )
    combined = guard_pools(
        combine(plan.tables, gathered.outcomes, POLICIES.profile, gathered.pooling),
        gathered.outcomes,
    )
    return gathered, combined


def rules(value: Value) -> set[str]:
    return {r.rule for r in value.reasons}


def cells(combined: Combined, table: Breakdown) -> dict[tuple[str, ...], Value]:
    return {tuple(d.value for d in c.dimensions): c.count for c in combined.tables[table]}


async def test_a_rare_count_is_released_pooled_while_every_country_is_low() -> None:
    handler = Nodes()
    gathered, combined = await ask(handler, SEX, BY_COUNTRY_SEX)
    assert {n.jurisdiction: n.count.status for n in combined.by_jurisdiction if n.count} == {
        j: ValueStatus.LOW for j in FOUR
    }
    count = combined.count
    assert (count.value, count.status, count.sd) == (23, ValueStatus.PERTURBED, 5.0)
    assert SECURE_POOL in rules(count)
    assert count.contributors == [DK, FI, FR, DE]  # in the order of the Jurisdiction enum
    # The table asked without JURISDICTION is pooled too; the one by country stays national,
    # its small cells LOW next to the pooled ones.
    by_sex = cells(combined, SEX)
    assert {k: v.value for k, v in by_sex.items()} == {
        ("FEMALE",): 14,
        ("MALE",): None,  # 9: below the strictest minimum (FR's 11) once pooled
        ("UNKNOWN",): None,
    }
    assert by_sex[("MALE",)].status is ValueStatus.LOW
    assert SECURE_POOL in rules(by_sex[("MALE",)])
    assert all(c.count.value is None for c in combined.tables[BY_COUNTRY_SEX])
    # One round; every node was a participant, told the same round.
    assert sorted(handler.rounds()) == sorted((j, 1) for j in FOUR)
    requests = {r.pooling.nonce for _, r in handler.asked if r.pooling is not None}
    assert len(requests) == 1
    (_, asked), *_ = handler.asked
    assert asked.pooling is not None
    assert asked.pooling.participants == sorted(n.node_id for n in nodes().values())
    assert asked.pooling.tables == [(), SEX]
    assert asked.pooling.national == [(), SEX]  # the total, and SEX for the table by country
    assert gathered.pooling is not None
    assert gathered.pooling.failure is None


async def test_only_nodes_that_pool_take_part() -> None:
    profiles = POLICIES.profile
    assert participants(FOUR, nodes(), profiles) == (DE, DK, FI, FR)  # by node id
    assert participants(FOUR, nodes(pools=(FR, DE, DK)), profiles) == (DE, DK, FR)
    # Fewer than every one's minimum of three: nobody.
    assert participants(FOUR, nodes(pools=(FR, DE)), profiles) == ()

    def staying_out(j: Jurisdiction) -> DisclosureProfile:
        profile = profiles(j)
        if j is FI:
            return profile.model_copy(update={"secure_pooling": False})
        if j is DK:
            return profile.model_copy(update={"pool_min_nodes": 4})
        return profile

    # FI stays out; DK then lacks its four nodes; FR and DE alone lack their three.
    assert participants(FOUR, nodes(), staying_out) == ()


def test_a_measure_that_does_not_pool_securely_is_never_pooled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = make_plan(SEX)
    assert plan_round(1, FOUR, plan, ((), SEX), nodes(), POLICIES.profile) is not None
    count = MeasureKind.PERSON_COUNT
    monkeypatch.setitem(MEASURES, count, dataclasses.replace(MEASURES[count], secure=False))
    assert plan_round(1, FOUR, plan, ((), SEX), nodes(), POLICIES.profile) is None


async def test_without_pooling_nodes_every_table_is_national_as_before() -> None:
    handler = Nodes()
    gathered, combined = await ask(handler, SEX, pools=())
    assert gathered.pooling is None
    assert all(r.pooling is None for _, r in handler.asked)
    assert combined.count.status is ValueStatus.SUPPRESSED
    assert rules(combined.count) == {"INCOMPLETE_POOL"}


async def test_the_pooled_count_is_only_pooled_when_asked_for() -> None:
    plan = make_plan(SEX, BY_COUNTRY_SEX)
    assert pooled_tables(plan, total=True) == ((), SEX)
    assert pooled_tables(plan, total=False) == (SEX,)
    handler = Nodes()
    _, combined = await ask(handler, SEX, pool_total=False)
    (_, asked), *_ = handler.asked
    assert asked.pooling is not None
    assert asked.pooling.tables == [SEX]
    assert SECURE_POOL not in rules(combined.count)


async def test_a_pooled_total_is_the_only_total_unless_the_countries_counts_are_asked() -> None:
    handler = Nodes()
    gathered, combined = await ask(handler, SEX, per_country=False)
    (_, asked), *_ = handler.asked
    assert asked.pooling is not None
    assert asked.pooling.tables == [(), SEX]
    assert asked.pooling.national == []  # no national total: the pooled one is released
    # Nothing national left any participant; the pooled count is as before.
    assert all(o.response and o.response.tables == [] for o in gathered.outcomes)
    assert (combined.count.value, combined.count.status) == (23, ValueStatus.PERTURBED)
    assert SECURE_POOL in rules(combined.count)
    for node in combined.by_jurisdiction:
        # Not asked, and said so: null, never a LOW that would look like a small count.
        assert node.status is NodeStatus.OK
        assert node.count is None
        assert NOT_ASKED in {r.rule for r in node.reasons}
    assert {v.value for v in cells(combined, SEX).values()} == {14, None}


async def test_a_table_by_country_alone_asks_each_country_total() -> None:
    plan = make_plan(BY_COUNTRY_SEX)
    # The table by country and sex is national; the total is not, unless asked for.
    assert national_tables(plan, total=False) == (SEX,)
    assert national_tables(plan, total=True) == ((), SEX)
    handler = Nodes()
    _, combined = await ask(handler, (Dimension.JURISDICTION,), per_country=False)
    (_, asked), *_ = handler.asked
    assert asked.pooling is not None
    assert asked.pooling.national == [()]  # the table by JURISDICTION is the countries' totals
    assert all(n.count is not None for n in combined.by_jurisdiction)


async def test_countries_outside_the_pool_release_their_total_and_it_is_added() -> None:
    counts = {**RARE, FI: {(): 40, SEX: {("FEMALE",): 25, ("MALE",): 15}}}
    handler = Nodes(counts, refuse=[FI])
    _, combined = await ask(handler, SEX, per_country=False)
    national = {j: r.national_tables for j, r in handler.asked}
    assert national[FI] == [(), SEX]  # round 2, without pooling: every table national
    assert all(national[j] == [] for j in (FR, DE, DK))
    assert combined.count.value == 15 + 40
    fi = next(n for n in combined.by_jurisdiction if n.jurisdiction is FI)
    assert fi.count is not None
    assert fi.count.value == 40
    assert all(n.count is None for n in combined.by_jurisdiction if n.jurisdiction is not FI)


async def test_a_round_that_cannot_complete_leaves_the_total_withheld_not_guessed() -> None:
    handler = Nodes(fail=[(FI, 1), (DK, 2)])
    _, combined = await ask(handler, SEX, per_country=False)
    assert combined.count.status is ValueStatus.SUPPRESSED
    assert rules(combined.count) >= {"INCOMPLETE_POOL"}
    # Too few left to pool: the others fall back to national answers, totals included.
    handler = Nodes(fail=[(FI, 1), (DK, 1)])
    _, combined = await ask(handler, SEX, per_country=False)
    fallback = [r for j, r in handler.asked if r.pooling is None]
    assert fallback
    assert all(() in r.national_tables for r in fallback)
    assert SECURE_POOL not in rules(combined.count)


async def test_a_node_that_dies_mid_round_is_left_out_of_a_second_round() -> None:
    handler = Nodes(fail=[(FI, 1)])
    gathered, combined = await ask(handler, SEX)
    assert sorted(handler.rounds()) == sorted([(j, 1) for j in FOUR] + [(FR, 2), (DE, 2), (DK, 2)])
    second = [r.pooling for j, r in handler.asked if r.pooling and r.pooling.round == 2]
    first = [r.pooling for j, r in handler.asked if r.pooling and r.pooling.round == 1]
    assert second[0] is not None
    assert first[0] is not None
    assert second[0].nonce != first[0].nonce
    assert second[0].participants == ["tessera-node-de", "tessera-node-dk", "tessera-node-fr"]
    # The pool covers the three that answered, and says FI is missing.
    assert combined.count.value == 15
    assert combined.count.contributors == [DK, FR, DE]
    assert {"SECURE_POOL", "PARTIAL"} <= rules(combined.count)
    statuses = {n.jurisdiction: n.status for n in combined.by_jurisdiction}
    assert statuses[FI] is NodeStatus.UNAVAILABLE
    # What the survivors were charged: both rounds (their shares were drawn twice).
    fr = next(n for n in combined.by_jurisdiction if n.jurisdiction is FR)
    assert fr.privacy is not None
    assert fr.privacy.question_rho == pytest.approx(0.02 * 2 + 0.02 * 2)
    assert gathered.pooling is not None
    assert gathered.pooling.failure is not None


async def test_a_second_failure_withholds_the_pooled_cells() -> None:
    handler = Nodes(fail=[(FI, 1), (DK, 2)])
    _, combined = await ask(handler, SEX)
    # The total falls back to the national totals (LOW here); the table had none.
    assert combined.count.status is ValueStatus.SUPPRESSED
    assert any("two rounds" in r.message for r in combined.count.reasons)
    for cell in cells(combined, SEX).values():
        assert cell.status is ValueStatus.SUPPRESSED
        (reason,) = cell.reasons
        assert reason.rule == "INCOMPLETE_POOL"
        assert "DK (UNAVAILABLE)" in reason.message
        assert "two rounds" in reason.message
    # DK's own answer of round 1 still stands.
    statuses = {n.jurisdiction: n.status for n in combined.by_jurisdiction}
    assert statuses[DK] is NodeStatus.OK


async def test_too_few_left_to_pool_answer_nationally_as_before() -> None:
    handler = Nodes(fail=[(FI, 1), (DK, 1)])
    _, combined = await ask(handler, SEX)
    assert sorted(j for j, r in handler.rounds() if r is None) == [DE, FR]
    # FR and DE answered every table nationally: their LOW parts withhold the pool.
    assert combined.count.status is ValueStatus.SUPPRESSED
    assert rules(combined.count) >= {"INCOMPLETE_POOL"}
    assert SECURE_POOL not in rules(combined.count)


async def test_a_node_that_refuses_the_round_answers_nationally_in_the_second() -> None:
    counts = {**RARE, FI: {(): 40, SEX: {("FEMALE",): 25, ("MALE",): 15}}}
    handler = Nodes(counts, refuse=[FI])
    _, combined = await ask(handler, SEX)
    assert (FI, None) in handler.rounds()
    # FR, DE and DK pool securely; FI's released 40 is added to their pool.
    assert combined.count.value == 15 + 40
    assert combined.count.contributors == [DK, FI, FR, DE]
    assert combined.count.sd == pytest.approx((5.0**2 + 5.0**2) ** 0.5)
    assert rules(combined.count) >= {"SECURE_POOL", "NOISE"}
    female = cells(combined, SEX)[("FEMALE",)]
    assert female.value == 8 + 25
    # Where FI's own part is LOW, the pool is withheld with it.
    assert cells(combined, SEX)[("UNKNOWN",)].status is ValueStatus.SUPPRESSED


async def test_shares_that_do_not_add_up_release_nothing() -> None:
    handler = Nodes(wrong=[DK])
    _, combined = await ask(handler, SEX)
    assert combined.count.status is ValueStatus.SUPPRESSED
    assert "IMPLAUSIBLE_POOL" in rules(combined.count)
    assert all(rules(v) == {"IMPLAUSIBLE_POOL"} for v in cells(combined, SEX).values())


async def test_a_two_country_question_does_not_pool() -> None:
    handler = Nodes()
    gathered, _ = await ask(handler, SEX, members=(FR, DE))
    assert gathered.pooling is None


async def test_the_gateway_logs_traces_and_audits_no_share(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = Nodes()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with caplog.at_level(logging.DEBUG):
        gathered, combined = await ask(handler, SEX, tracer=provider.get_tracer("test"))
    spans = exporter.get_finished_spans()
    assert spans  # one client span per node asked
    traced = json.dumps([dict(s.attributes or {}) for s in spans], default=str)
    shares = [
        share
        for o in gathered.outcomes
        for vector in o.shares.values()
        for share in (str(v) for v in vector.tolist())
    ]
    encoded = [
        t.shares
        for o in gathered.outcomes
        if o.response is not None and o.response.pooled is not None
        for t in o.response.pooled.tables
    ]
    assert shares
    assert encoded
    plan = make_plan(SEX)
    approval = Approval(request_id=REQUEST_ID, purpose="scientific_research", jurisdictions=FOUR)
    decision = decide_access(
        plan,
        Presented((Permit("iss", SUBJECT, approval, "token"),)),
        POLICIES,
        allowed=lambda issuer, j: True,
    ).decisions
    recorded = json.dumps(
        [node_step(o, decision[o.jurisdiction]).model_dump(mode="json") for o in gathered.outcomes]
        + [released_result(plan, combined)],
        default=str,
    )
    for text in (recorded, caplog.text, traced):
        assert not any(share in text for share in encoded)
        assert not any(f"{share}" in text for share in shares if len(share) > 6)


# -- what a node must send ------------------------------------------------------------------
def pooled_request() -> tuple[NodeInfo, NodeRequest, NodeResponse]:
    """FR's request in a round of the four, and FR's honest answer to it."""
    plan = make_plan(SEX)
    round_ = plan_round(1, FOUR, plan, ((), SEX), nodes(), POLICIES.profile)
    assert round_ is not None
    approval = Approval(request_id=REQUEST_ID, purpose="scientific_research", jurisdictions=FOUR)
    request = plan.node_request(FR, approval, round_.request)
    response = Nodes()(nodes()[FR], request)
    assert isinstance(response, NodeResponse)
    return nodes()[FR], request, response


def outcome_of(change: dict[str, Any] | None = None, **pooled: Any) -> NodeOutcome:
    node, request, response = pooled_request()
    assert response.pooled is not None
    if pooled:
        response = response.model_copy(update={"pooled": response.pooled.model_copy(update=pooled)})
    if change:
        response = response.model_copy(update=change)
    return check_response(
        node, request, NodeResponse.model_validate_json(response.model_dump_json()), 1.0
    )


def test_an_answer_with_its_shares_passes() -> None:
    outcome = outcome_of()
    assert outcome.status is NodeStatus.OK
    assert set(outcome.shares) == {(), SEX}
    assert [len(v) for v in outcome.shares.values()] == [1, 3]


@pytest.mark.parametrize(
    ("pooled", "change", "problem"),
    [
        ({"nonce": "A" * 43}, None, "pooled round differs"),
        ({"round": 2}, None, "pooled round differs"),
        ({"participants": ["tessera-node-de", "tessera-node-fr"]}, None, "pooled round differs"),
        ({}, {"pooled": None}, "pooled shares differ"),
    ],
)
def test_an_answer_for_another_round_is_rejected(
    pooled: dict[str, Any], change: dict[str, Any] | None, problem: str
) -> None:
    outcome = outcome_of(change, **pooled)
    assert outcome.status is NodeStatus.REJECTED
    assert outcome.message is not None
    assert problem in outcome.message


def test_shares_must_cover_every_cell_of_the_domain() -> None:
    node, request, response = pooled_request()
    assert response.pooled is not None
    short = response.pooled.tables[1].model_copy(
        update={"shares": encode_shares(np.zeros(2, dtype=np.uint64))}
    )
    pooled = response.pooled.model_copy(update={"tables": [response.pooled.tables[0], short]})
    outcome = check_response(node, request, response.model_copy(update={"pooled": pooled}), 1.0)
    assert outcome.status is NodeStatus.REJECTED
    assert outcome.message is not None
    assert "one share per cell" in outcome.message
