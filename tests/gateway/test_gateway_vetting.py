"""Vetting node answers: a well-formed answer that breaks the node's own rules (an exact or
too little noisy count, a count below its minimum, a table that is not its public domain), or
cannot be true, is REJECTED whole, and none of its numbers reach the researcher."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.federation import NodeInfo
from gateway.nodes import MockNodeClient, NodeOutcome, check_response
from gateway.vetting import AnswerToVet, VettingNodeClient, cells_within_total, vet
from policies.domain import table_domain
from policies.loader import shipped_disclosure_profile as profile_for
from schema.codes import Dimension, Jurisdiction, NodeStatus, ValueStatus
from schema.measures import MEASURES
from schema.pooling import PoolingRequest, encode_nonce
from schema.query import Breakdown
from schema.result import Value
from schema.wire import NodeRequest, NodeResponse, valid_key_value
from tests.gateway.gateway_kit import (
    AGE10,
    APPROVAL,
    COUNT,
    DEFAULT_COUNTS,
    SEX,
    counts_handler,
    make_plan,
    node_response,
)

FR, DK = Jurisdiction.FR, Jurisdiction.DK
YEAR: Breakdown = (Dimension.CALENDAR_YEAR,)


def noisy(n: int, sd: float = 5.0) -> Value:
    return Value(value=n, status=ValueStatus.PERTURBED, sd=sd)


LOW = Value.low(sd=5.0)


def answer(j: Jurisdiction, counts: Any, *tables: Breakdown) -> tuple[NodeOutcome, NodeRequest]:
    """A node's answer sending `counts` as they are (ints as EXACT values)."""
    plan = make_plan(*tables)
    request = plan.node_request(j, APPROVAL)
    response = node_response(request, counts, honest=False)
    outcome = check_response(NodeInfo(j, f"node-{j}", "http://x"), request, response, 1.0)
    assert outcome.status is NodeStatus.OK, outcome
    return outcome, request


def vetted(j: Jurisdiction, counts: Any, *tables: Breakdown) -> NodeOutcome:
    outcome, request = answer(j, counts, *tables)
    return vet(outcome, profile_for(j), request)


BY_SEX = {("FEMALE",): noisy(180), ("MALE",): noisy(120), ("UNKNOWN",): LOW}


def test_an_honest_answer_passes_unchanged() -> None:
    plan = make_plan(SEX, AGE10)
    request = plan.node_request(FR, APPROVAL)
    response = node_response(request, DEFAULT_COUNTS[FR])
    outcome = check_response(NodeInfo(FR, "node-fr", "http://x"), request, response, 1.0)
    assert vet(outcome, profile_for(FR), request) is outcome


def test_an_exact_count_is_rejected_whole() -> None:
    outcome = vetted(FR, {(): 300})
    assert outcome.status is NodeStatus.REJECTED
    assert "without noise" in (outcome.message or "")
    assert "300" not in (outcome.message or "")  # never the value
    assert outcome.measures == {}
    assert outcome.latency_ms == 1.0


def test_less_noise_than_the_node_publishes_is_rejected() -> None:
    outcome = vetted(FR, {(): noisy(300, sd=1.0)})
    assert outcome.status is NodeStatus.REJECTED
    assert "published sd of 5" in (outcome.message or "")


def test_a_count_below_the_published_minimum_is_rejected() -> None:
    outcome = vetted(FR, {(): noisy(2)})
    assert outcome.status is NodeStatus.REJECTED
    assert outcome.message is not None
    assert "published minimum of 11" in outcome.message
    assert "2" not in outcome.message.replace("11", "")  # never the value


def test_the_minimum_is_the_nodes_own() -> None:
    # DK's minimum is 5, FR's 11: 6 is fine for DK only, 4 for neither.
    assert vetted(DK, {(): noisy(6)}).status is NodeStatus.OK
    assert vetted(FR, {(): noisy(6)}).status is NodeStatus.REJECTED
    assert vetted(DK, {(): noisy(4)}).status is NodeStatus.REJECTED


def test_a_node_count_claiming_to_pool_countries_is_rejected() -> None:
    pooled = noisy(300).model_copy(update={"contributors": [FR, DK]})
    outcome = vetted(FR, {(): pooled})
    assert outcome.status is NodeStatus.REJECTED
    assert "pool several countries" in (outcome.message or "")


def test_low_counts_carry_no_value_and_pass() -> None:
    assert vetted(FR, {(): LOW, SEX: {k: LOW for k in BY_SEX}}, SEX).status is NodeStatus.OK


def test_a_table_must_list_exactly_its_public_cells() -> None:
    # A node leaving out the empty UNKNOWN group says who exists; one adding a group says so too.
    missing = {k: v for k, v in BY_SEX.items() if k != ("UNKNOWN",)}
    outcome = vetted(FR, {(): noisy(300), SEX: missing}, SEX)
    assert outcome.status is NodeStatus.REJECTED
    assert "exactly its public cells" in (outcome.message or "")
    assert vetted(FR, {(): noisy(300), SEX: BY_SEX}, SEX).status is NodeStatus.OK
    ages = make_plan(AGE10).node_query
    assert ages.criteria.age is None  # every band of 0..130 is in the domain
    assert vetted(FR, {(): noisy(300), AGE10: {("40-49",): noisy(300)}}, AGE10).status is (
        NodeStatus.REJECTED
    )


def test_an_impossibly_large_count_is_rejected() -> None:
    assert vetted(FR, {(): noisy(10**12)}).status is NodeStatus.REJECTED


def test_a_cell_larger_than_the_total_beyond_their_noise_is_rejected() -> None:
    too_much = {("FEMALE",): noisy(180), ("MALE",): noisy(20), ("UNKNOWN",): LOW}
    outcome = vetted(FR, {(): noisy(100), SEX: too_much}, SEX)
    assert outcome.status is NodeStatus.REJECTED
    assert "larger than the total" in (outcome.message or "")
    # Within a few sds of their noise, a noisy cell may be larger than a noisy total.
    within = {("FEMALE",): noisy(120), ("MALE",): LOW, ("UNKNOWN",): LOW}
    assert vetted(FR, {(): noisy(100), SEX: within}, SEX).status is NodeStatus.OK


def test_released_noisy_cells_may_add_up_to_more_than_the_total() -> None:
    # A sparse table of an honest node: only the cells whose noise lifted them to the minimum
    # are released, each around 11 to 20, while most of the 27 five-year bands hold nobody.
    ages = make_plan((Dimension.AGE_BAND_5,)).node_query
    bands = table_domain((Dimension.AGE_BAND_5,), ages)
    sparse = {key: noisy(15) if i % 3 == 0 else LOW for i, key in enumerate(bands)}
    outcome = vetted(FR, {(): noisy(60), (Dimension.AGE_BAND_5,): sparse}, (Dimension.AGE_BAND_5,))
    assert outcome.status is NodeStatus.OK  # 9 × 15 = 135 > 60


def test_exact_cells_adding_up_to_more_than_the_total_are_impossible() -> None:
    # Only a node breaking its rules sends exact values; the sum check still covers them.
    exact = {("FEMALE",): Value.exact(80), ("MALE",): Value.exact(70), ("UNKNOWN",): LOW}
    outcome, request = answer(FR, {(): Value.exact(100), SEX: exact}, SEX)
    problem = cells_within_total(
        AnswerToVet(outcome.measures[COUNT], profile_for(FR), request, MEASURES[COUNT])
    )
    assert problem is not None
    assert "add up to more than the total" in problem


@pytest.mark.parametrize(
    ("table", "key"),
    [
        (SEX, "OTHER"),
        (AGE10, "40-50"),
        (AGE10, "45-54"),
        (AGE10, "forty"),
        (YEAR, "20245"),
        (YEAR, "1492"),
    ],
)
def test_a_key_no_node_produces_is_rejected(table: Breakdown, key: str) -> None:
    counts = {(): noisy(300), table: {(key,): noisy(300)}}
    outcome = vetted(FR, counts, table)
    assert outcome.status is NodeStatus.REJECTED
    assert "key no node produces" in (outcome.message or "")


@pytest.mark.parametrize(
    ("dimension", "value"),
    [
        (Dimension.SEX, "FEMALE"),
        (Dimension.SEX, "UNKNOWN"),
        (Dimension.AGE_BAND_5, "85-89"),
        (Dimension.AGE_BAND_10, "0-9"),
        (Dimension.AGE_BAND_20, "100-119"),
        (Dimension.CALENDAR_YEAR, "2024"),
        (Dimension.CALENDAR_YEAR, "UNKNOWN"),
    ],
)
def test_keys_connectors_produce_are_valid(dimension: Dimension, value: str) -> None:
    assert valid_key_value(dimension, value)
    assert not valid_key_value(Dimension.JURISDICTION, "FR")


def test_not_ok_outcomes_are_left_alone() -> None:
    failed = NodeOutcome.failed(FR, NodeStatus.TIMEOUT, "slow")
    assert vet(failed, profile_for(FR), make_plan().node_request(FR, APPROVAL)) is failed


async def test_the_vetting_client_vets_with_each_nodes_profile() -> None:
    def handler(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        # 6 everywhere: enough for DK (5), not for FR (11).
        return node_response(request, {(): noisy(6)}, honest=False)

    client = VettingNodeClient(MockNodeClient(handler), profile_for)
    plan = make_plan()
    statuses = {}
    for j in (FR, DK):
        node = NodeInfo(j, f"node-{j}", "http://x")
        outcome = await client.query(
            node, plan.node_request(j, APPROVAL), approval_token="t", timeout=1
        )
        statuses[j] = outcome.status
    assert statuses == {FR: NodeStatus.REJECTED, DK: NodeStatus.OK}


async def test_through_the_gateway_a_lying_node_costs_only_itself(
    graphql: Any, nodes: MockNodeClient
) -> None:
    honest = counts_handler()

    def handler(node: NodeInfo, request: NodeRequest) -> Any:
        if node.jurisdiction is FR:
            return node_response(request, {(): 2, SEX: {("FEMALE",): 2}}, honest=False)
        return honest(node, request)

    nodes.handler = handler
    body = await graphql(
        '{ cohort(request: "DR-2026-0042", criteria: {}) { count { value reasons { rule } } '
        "byJurisdiction { jurisdiction status error count { value } } "
        "breakdown(by: [SEX]) { cells { count { value } } } } }"
    )
    result = body["data"]["cohort"]
    by = {n["jurisdiction"]: n for n in result["byJurisdiction"]}
    assert by["FR"]["status"] == "REJECTED"
    assert by["FR"]["count"] is None
    assert result["count"]["value"] == 150 + 50  # DK + NO; FR's 2 is nowhere
    # UNKNOWN (nobody, in DK and NO) is LOW in both, so LOW pooled too.
    assert [c["count"]["value"] for c in result["breakdown"]["cells"]] == [120, 80, None]


def pooled_request(national: list[Breakdown]) -> NodeRequest:
    """FR's request in a pooled round of three that pools the total and the table by sex and
    releases `national` on its own."""
    request = make_plan(SEX).node_request(FR, APPROVAL)
    pooling = PoolingRequest(
        nonce=encode_nonce(bytes(range(32))),
        round=1,
        participants=["node-de", "node-dk", "node-fr"],
        sigma=5.0,
        tables=[(), SEX],
        national=national,
    )
    return request.model_copy(update={"pooling": pooling})


def test_without_a_total_asked_the_cells_are_vetted_without_one() -> None:
    # Asked no total of its own (only the pooled one): nothing to hold its cells against
    # but the other checks, which still reject what they always did.
    request = pooled_request([SEX])
    ok = NodeOutcome(FR, NodeStatus.OK, 1.0, measures={COUNT: {SEX: BY_SEX}})
    assert vet(ok, profile_for(FR), request) is ok
    exact = NodeOutcome(
        FR,
        NodeStatus.OK,
        1.0,
        measures={COUNT: {SEX: {**BY_SEX, ("MALE",): Value(value=120, status=ValueStatus.EXACT)}}},
    )
    assert vet(exact, profile_for(FR), request).status is NodeStatus.REJECTED
    nothing = pooled_request([])
    empty = NodeOutcome(FR, NodeStatus.OK, 1.0, measures={COUNT: {}})
    assert vet(empty, profile_for(FR), nothing) is empty


def test_a_total_sent_though_not_asked_or_missing_though_asked_is_rejected() -> None:
    # Fail closed: a total the node was not asked to release (only to pool) is not used, and
    # an answer without the total it was asked for is not vetted as if it had none to check.
    unasked = NodeOutcome(
        FR, NodeStatus.OK, 1.0, measures={COUNT: {(): {(): noisy(300)}, SEX: BY_SEX}}
    )
    outcome = vet(unasked, profile_for(FR), pooled_request([SEX]))
    assert outcome.status is NodeStatus.REJECTED
    assert "tables differ" in (outcome.message or "")
    missing = NodeOutcome(FR, NodeStatus.OK, 1.0, measures={COUNT: {SEX: BY_SEX}})
    assert vet(missing, profile_for(FR), pooled_request([(), SEX])).status is NodeStatus.REJECTED
