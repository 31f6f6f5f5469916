"""Combining node answers: pooling, incomplete pools, partial answers, and the gateway's own
disclosure control over whatever the nodes sent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway_kit import (
    AGE10,
    APPROVAL,
    DEFAULT_COUNTS,
    MEMBERS,
    POLICIES,
    SEX,
    Counts,
    make_plan,
    node_response,
)

from gateway.combine import combine, pool
from gateway.federation import NodeInfo
from gateway.nodes import NodeOutcome, check_response
from gateway.planner import Plan
from schema.codes import Dimension, Jurisdiction, NodeStatus, ValueStatus
from schema.query import Breakdown
from schema.result import Reason, Value

FR, DK, NO = Jurisdiction.FR, Jurisdiction.DK, Jurisdiction.NO
BY_COUNTRY: Breakdown = (Dimension.JURISDICTION,)
BY_COUNTRY_SEX: Breakdown = (Dimension.JURISDICTION, Dimension.SEX)


def answered(
    plan: Plan,
    counts: Mapping[Jurisdiction, Counts] = DEFAULT_COUNTS,
    *,
    honest: bool = True,
    failed: Mapping[Jurisdiction, NodeStatus] | None = None,
) -> list[NodeOutcome]:
    outcomes = []
    for j in plan.jurisdictions:
        if failed and j in failed:
            outcomes.append(NodeOutcome.failed(j, failed[j], "down"))
            continue
        request = plan.node_request(j, APPROVAL)
        response = node_response(request, counts[j], honest=honest)
        outcome = check_response(NodeInfo(j, f"node-{j}", "http://x"), request, response, 1.0)
        assert outcome.status is NodeStatus.OK, outcome
        outcomes.append(outcome)
    return outcomes


def cells(table: Any) -> dict[tuple[str, ...], int | None]:
    return {tuple(d.value for d in c.dimensions): c.count.value for c in table}


def test_pooling_sums_every_node() -> None:
    plan = make_plan(SEX, AGE10)
    result = combine(plan.tables, answered(plan), POLICIES.profile)
    assert result.count == Value.exact(500)
    assert {n.jurisdiction: n.count.value for n in result.by_jurisdiction if n.count} == {
        FR: 300,
        DK: 150,
        NO: 50,
    }
    assert cells(result.tables[SEX]) == {("FEMALE",): 300, ("MALE",): 200}
    assert cells(result.tables[AGE10]) == {("40-49",): 190, ("50-59",): 310}
    assert cells(result.tables[()]) == {(): 500}


def test_a_cell_missing_at_a_node_counts_zero() -> None:
    counts = {**DEFAULT_COUNTS, NO: {(): 50, SEX: {("FEMALE",): 50}}}
    plan = make_plan(SEX)
    result = combine(plan.tables, answered(plan, counts), POLICIES.profile)
    assert cells(result.tables[SEX]) == {("FEMALE",): 320, ("MALE",): 180}


def test_a_suppressed_part_suppresses_the_pool() -> None:
    # NO sends MALE = 2 (below its minimum of 3): suppressed at NO, so the pooled MALE cell
    # cannot be released even though FR + DK alone would be large.
    counts = {**DEFAULT_COUNTS, NO: {(): 50, SEX: {("FEMALE",): 48, ("MALE",): 2}}}
    plan = make_plan(SEX)
    result = combine(plan.tables, answered(plan, counts), POLICIES.profile)
    male = next(c.count for c in result.tables[SEX] if c.dimensions[0].value == "MALE")
    assert male.value is None
    assert male.status is ValueStatus.SUPPRESSED
    assert [(r.rule, r.jurisdiction) for r in male.reasons] == [("INCOMPLETE_POOL", NO)]
    # The pooled total minus FEMALE would give the pooled MALE cell, and with the other
    # countries' MALE counts (from another answer) NO's withheld 2: FEMALE is suppressed too.
    female = next(c.count for c in result.tables[SEX] if c.dimensions[0].value == "FEMALE")
    assert [r.rule for r in female.reasons] == ["SECONDARY_SUPPRESSION"]
    assert result.count.value == 500


def test_a_suppressed_node_total_suppresses_the_pooled_total() -> None:
    counts = {**DEFAULT_COUNTS, FR: {(): 4}, DK: {(): 3}}
    plan = make_plan()
    result = combine(plan.tables, answered(plan, counts), POLICIES.profile)
    assert result.count.value is None
    reason = result.count.reasons[0]
    assert (reason.rule, reason.jurisdiction) == ("INCOMPLETE_POOL", None)
    assert "DK, FR" in reason.message
    fr = next(n for n in result.by_jurisdiction if n.jurisdiction is FR)
    assert fr.count is not None
    assert fr.count.value is None
    assert [(r.rule, r.jurisdiction) for r in fr.count.reasons] == [("PRIMARY_SUPPRESSION", FR)]


def test_partial_answer_is_flagged_and_still_released() -> None:
    plan = make_plan()
    result = combine(plan.tables, answered(plan, failed={DK: NodeStatus.TIMEOUT}), POLICIES.profile)
    assert result.count.value == 350
    assert result.count.status is ValueStatus.EXACT
    assert [r.rule for r in result.count.reasons] == ["PARTIAL"]
    assert result.count.reasons[0].message == "no answer from DK (TIMEOUT)"
    dk = next(n for n in result.by_jurisdiction if n.jurisdiction is DK)
    assert (dk.status, dk.count, dk.error) == (NodeStatus.TIMEOUT, None, "down")


def test_no_node_answered() -> None:
    plan = make_plan(SEX)
    down = dict.fromkeys(MEMBERS, NodeStatus.UNAVAILABLE)
    result = combine(plan.tables, answered(plan, failed=down), POLICIES.profile)
    assert result.count.value is None
    assert [r.rule for r in result.count.reasons] == ["NO_NODE_ANSWERED"]
    assert result.tables[SEX] == ()


def test_gateway_suppresses_a_hostile_nodes_small_exact_value() -> None:
    # A node that ignores its own rules and sends FR = 4 as EXACT: the gateway re-applies
    # FR's minimum (11) to the node's count, its cells, and to every pool FR is part of.
    counts = {
        **DEFAULT_COUNTS,
        FR: {(): 4, SEX: {("FEMALE",): 4}},
        DK: {(): 3, SEX: {("MALE",): 3}},
        NO: {(): 2, SEX: {("MALE",): 2}},
    }
    plan = make_plan(SEX, BY_COUNTRY_SEX)
    result = combine(plan.tables, answered(plan, counts, honest=False), POLICIES.profile)
    fr = next(n for n in result.by_jurisdiction if n.jurisdiction is FR)
    assert fr.count is not None
    assert fr.count.value is None
    assert [(r.rule, r.jurisdiction) for r in fr.count.reasons] == [("PRIMARY_SUPPRESSION", FR)]
    # Every part is withheld once the gateway applies its owner's rule, so the pool is too.
    assert result.count.value is None
    assert [(r.rule, r.jurisdiction) for r in result.count.reasons] == [("INCOMPLETE_POOL", None)]
    assert "DK, FR, NO" in result.count.reasons[0].message
    assert cells(result.tables[SEX]) == {("FEMALE",): None, ("MALE",): None}
    assert cells(result.tables[BY_COUNTRY_SEX]) == {
        ("DK", "MALE"): None,  # 3 < 5
        ("FR", "FEMALE"): None,  # 4 < 11
        ("NO", "MALE"): None,  # 2 < 3
    }


def test_a_pool_is_checked_against_the_strictest_contributor() -> None:
    # DK (minimum 5) and NO (minimum 3) answer, FR is down: 6 + 4 = 10 is released under
    # max(5, 3) = 5.
    counts = {**DEFAULT_COUNTS, DK: {(): 6}, NO: {(): 4}}
    plan = make_plan()
    result = combine(
        plan.tables, answered(plan, counts, failed={FR: NodeStatus.ERROR}), POLICIES.profile
    )
    assert result.count.value == 10
    # With FR answering (minimum 11) but without a MALE cell, the same 10 is withheld.
    counts = {
        FR: {(): 300, SEX: {("FEMALE",): 300}},
        DK: {(): 150, SEX: {("MALE",): 6}},
        NO: {(): 50, SEX: {("MALE",): 4}},
    }
    plan = make_plan(SEX)
    result = combine(plan.tables, answered(plan, counts), POLICIES.profile)
    male = next(c.count for c in result.tables[SEX] if c.dimensions[0].value == "MALE")
    assert male.value is None
    assert [(r.rule, r.jurisdiction) for r in male.reasons] == [("PRIMARY_SUPPRESSION", None)]
    assert "11" in male.reasons[0].message


def test_a_hostile_exact_zero_cannot_be_differenced_out() -> None:
    # DK sends an EXACT 0 its own rule suppresses; pooled 11 minus FR's released 11 would
    # reveal it. The part is withheld at the gateway, so the pool is withheld too.
    counts = {**DEFAULT_COUNTS, FR: {(): 11}, DK: {(): 0}, NO: {(): 3}}
    plan = make_plan()
    result = combine(plan.tables, answered(plan, counts, honest=False), POLICIES.profile)
    assert result.count.value is None
    assert [(r.rule, r.jurisdiction) for r in result.count.reasons] == [("INCOMPLETE_POOL", DK)]


def test_breakdown_by_jurisdiction() -> None:
    plan = make_plan(BY_COUNTRY, BY_COUNTRY_SEX, (Dimension.SEX, Dimension.JURISDICTION))
    result = combine(
        plan.tables, answered(plan, failed={NO: NodeStatus.REJECTED}), POLICIES.profile
    )
    assert cells(result.tables[BY_COUNTRY]) == {("DK",): 150, ("FR",): 300}
    assert list(cells(result.tables[BY_COUNTRY_SEX])) == [
        ("DK", "FEMALE"),
        ("DK", "MALE"),
        ("FR", "FEMALE"),
        ("FR", "MALE"),
    ]
    swapped = cells(result.tables[(Dimension.SEX, Dimension.JURISDICTION)])
    assert swapped[("MALE", "FR")] == 120
    cell = result.tables[BY_COUNTRY_SEX][0]
    assert [(d.name, d.value) for d in cell.dimensions] == [
        (Dimension.JURISDICTION, "DK"),
        (Dimension.SEX, "FEMALE"),
    ]


def test_cells_sort_numbers_as_numbers() -> None:
    bands = {(b,): 20 for b in ("90+", "10-19", "0-9", "100-109", "UNKNOWN")}
    counts = {j: {(): 100, AGE10: bands} for j in MEMBERS}
    plan = make_plan(AGE10)
    result = combine(plan.tables, answered(plan, counts), POLICIES.profile)
    assert [k[0] for k in cells(result.tables[AGE10])] == [
        "0-9",
        "10-19",
        "90+",
        "100-109",
        "UNKNOWN",
    ]


def test_pool_of_inexact_values_keeps_the_least_exact_status() -> None:
    rounded = Value(value=20, status=ValueStatus.ROUNDED, bound=2.5)
    perturbed = Value(value=30, status=ValueStatus.PERTURBED, bound=1.0)
    pooled = pool([(FR, Value.exact(10)), (DK, rounded), (NO, perturbed)])
    assert (pooled.value, pooled.status, pooled.bound) == (60, ValueStatus.PERTURBED, 3.5)


def test_pool_never_adds_up_withheld_parts() -> None:
    why = Reason(rule="PRIMARY_SUPPRESSION", jurisdiction=FR, message="small")
    pooled = pool([(FR, Value.suppressed(why)), (DK, Value.exact(100))])
    assert pooled.value is None
    assert [r.rule for r in pooled.reasons] == ["INCOMPLETE_POOL"]
