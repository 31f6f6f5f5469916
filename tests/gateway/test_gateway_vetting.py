"""Vetting node answers: a well-formed answer that breaks the node's own rules, or cannot be
true, is REJECTED whole, and none of its numbers reach the researcher."""

from __future__ import annotations

from typing import Any

import pytest
from gateway_kit import (
    AGE10,
    APPROVAL,
    DEFAULT_COUNTS,
    SEX,
    counts_handler,
    make_plan,
    node_response,
)

from gateway.federation import NodeInfo
from gateway.nodes import MockNodeClient, NodeOutcome, check_response
from gateway.vetting import VettingNodeClient, vet
from policies.loader import shipped_disclosure_profile as profile_for
from policies.profiles import DisclosureProfile, ZeroHandling
from schema.codes import Dimension, Jurisdiction, NodeStatus, ValueStatus
from schema.query import Breakdown
from schema.result import Value
from schema.wire import NodeRequest, NodeResponse, valid_key_value

FR, DK = Jurisdiction.FR, Jurisdiction.DK
YEAR: Breakdown = (Dimension.CALENDAR_YEAR,)


def outcome_of(j: Jurisdiction, counts: Any, *tables: Breakdown) -> NodeOutcome:
    plan = make_plan(*tables)
    request = plan.node_request(j, APPROVAL)
    response = node_response(request, counts, honest=False)
    outcome = check_response(NodeInfo(j, f"node-{j}", "http://x"), request, response, 1.0)
    assert outcome.status is NodeStatus.OK, outcome
    return outcome


def vetted(j: Jurisdiction, counts: Any, *tables: Breakdown) -> NodeOutcome:
    return vet(outcome_of(j, counts, *tables), profile_for(j))


def test_an_honest_answer_passes_unchanged() -> None:
    outcome = outcome_of(FR, DEFAULT_COUNTS[FR], SEX, AGE10)
    assert vet(outcome, profile_for(FR)) is outcome


def test_a_count_below_the_published_minimum_is_rejected() -> None:
    outcome = vetted(FR, {(): 2})
    assert outcome.status is NodeStatus.REJECTED
    assert outcome.message is not None
    assert "published minimum of 11" in outcome.message
    assert "2" not in outcome.message.replace("11", "")  # never the value
    assert outcome.tables == {}
    assert outcome.latency_ms == 1.0


def test_the_minimum_is_the_nodes_own() -> None:
    # DK's minimum is 5, FR's 11: 6 is fine for DK only, 4 for neither.
    assert vetted(DK, {(): 6}).status is NodeStatus.OK
    assert vetted(FR, {(): 6}).status is NodeStatus.REJECTED
    assert vetted(DK, {(): 4}).status is NodeStatus.REJECTED


def test_a_small_cell_is_rejected_like_a_small_total() -> None:
    counts = {(): 300, SEX: {("FEMALE",): 297, ("MALE",): 3}}
    assert vetted(FR, counts, SEX).status is NodeStatus.REJECTED


def test_zeros_follow_the_profile() -> None:
    counts = {(): 300, SEX: {("FEMALE",): 300, ("MALE",): 0}}
    outcome = outcome_of(FR, counts, SEX)
    suppressing = DisclosureProfile(min_count=11, zero=ZeroHandling.SUPPRESS, source="t")
    releasing = DisclosureProfile(min_count=11, zero=ZeroHandling.RELEASE, source="t")
    assert vet(outcome, suppressing).status is NodeStatus.REJECTED
    assert vet(outcome, releasing) is outcome


def test_a_rounded_value_is_judged_with_its_bound() -> None:
    rounded = Value(value=10, status=ValueStatus.ROUNDED, bound=2.5)
    assert vetted(FR, {(): rounded}).status is NodeStatus.OK  # may be 11 or 12
    too_small = Value(value=5, status=ValueStatus.ROUNDED, bound=2.5)
    assert vetted(FR, {(): too_small}).status is NodeStatus.REJECTED


def test_an_exact_value_with_a_bound_is_rejected() -> None:
    odd = Value(value=40, status=ValueStatus.EXACT, bound=3)
    assert vetted(FR, {(): odd}).status is NodeStatus.REJECTED


def test_an_impossibly_large_count_is_rejected() -> None:
    assert vetted(FR, {(): 10**12}).status is NodeStatus.REJECTED


def test_cells_adding_up_to_more_than_the_total_are_rejected() -> None:
    counts = {(): 100, SEX: {("FEMALE",): 80, ("MALE",): 70}}
    outcome = vetted(FR, counts, SEX)
    assert outcome.status is NodeStatus.REJECTED
    assert "add up to more than the total" in (outcome.message or "")
    # Suppressed cells are unknown, so they cannot break the sum.
    counts = {(): 100, SEX: {("FEMALE",): 80, ("MALE",): Value.suppressed()}}
    assert vetted(FR, counts, SEX).status is NodeStatus.OK


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
    counts = {(): 300, table: {(key,): 300}}
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
    assert vet(failed, profile_for(FR)) is failed


async def test_the_vetting_client_vets_with_each_nodes_profile() -> None:
    def handler(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        # 6 everywhere: enough for DK (5), not for FR (11).
        return node_response(request, {(): 6}, honest=False)

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
    assert sorted(c["count"]["value"] for c in result["breakdown"]["cells"]) == [80, 120]
