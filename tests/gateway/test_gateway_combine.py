"""Combining node answers: pooling, incomplete pools, partial answers, and the gateway's own
disclosure control over whatever the nodes sent."""

from __future__ import annotations

import dataclasses
import math

import pytest

from gateway.combine import combine, pool, pooled_cells
from policies.disclosure import CellContext, protect
from policies.measures import PROTECTIONS
from policies.profiles import strictest
from schema.codes import Dimension, Jurisdiction, MeasureKind, NodeStatus, ValueStatus
from schema.measures import MAX_PERSONS
from schema.query import Breakdown
from schema.result import Reason, Value
from tests.gateway.gateway_kit import (
    AGE10,
    DEFAULT_COUNTS,
    MEMBERS,
    POLICIES,
    SEX,
    answered,
    cells,
    make_plan,
)

FR, DK, NO = Jurisdiction.FR, Jurisdiction.DK, Jurisdiction.NO
BY_COUNTRY: Breakdown = (Dimension.JURISDICTION,)
BY_COUNTRY_SEX: Breakdown = (Dimension.JURISDICTION, Dimension.SEX)


def test_pooling_sums_every_node_and_their_noise() -> None:
    plan = make_plan(SEX, AGE10)
    result = combine(plan.tables, answered(plan), POLICIES.profile)
    assert (result.count.value, result.count.status) == (500, ValueStatus.PERTURBED)
    assert result.count.sd == pytest.approx(math.sqrt(3 * 5.0**2))
    assert {n.jurisdiction: n.count.value for n in result.by_jurisdiction if n.count} == {
        FR: 300,
        DK: 150,
        NO: 50,
    }
    # UNKNOWN has nobody anywhere: LOW at every node, so no pooled value either.
    assert cells(result.tables[SEX]) == {("FEMALE",): 300, ("MALE",): 200, ("UNKNOWN",): None}
    ages = cells(result.tables[AGE10])
    assert len(ages) == 14  # every band of ages 0 to 130
    assert {k: v for k, v in ages.items() if v is not None} == {("40-49",): 190, ("50-59",): 310}
    assert cells(result.tables[()]) == {(): 500}


def test_a_low_part_withholds_only_its_own_pool() -> None:
    # NO has nobody in MALE: LOW there, so the pooled MALE cell is not released, even though
    # FR + DK alone would be large. Nothing else is withheld because of it: every released
    # number is noisy, so the total minus FEMALE gives no withheld count away.
    counts = {**DEFAULT_COUNTS, NO: {(): 50, SEX: {("FEMALE",): 50}}}
    plan = make_plan(SEX)
    result = combine(plan.tables, answered(plan, counts), POLICIES.profile)
    male = next(c.count for c in result.tables[SEX] if c.dimensions[0].value == "MALE")
    assert (male.value, male.status) == (None, ValueStatus.SUPPRESSED)
    assert [(r.rule, r.jurisdiction) for r in male.reasons] == [("INCOMPLETE_POOL", NO)]
    assert cells(result.tables[SEX])[("FEMALE",)] == 320
    assert result.count.value == 500


def test_a_cell_a_node_did_not_list_is_a_part_nobody_released() -> None:
    counts = {
        **DEFAULT_COUNTS,
        NO: {(): noisy(50), SEX: {("FEMALE",): noisy(50), ("UNKNOWN",): Value.low()}},
    }
    plan = make_plan(SEX)
    result = combine(plan.tables, answered(plan, counts, honest=False), POLICIES.profile)
    male = next(c.count for c in result.tables[SEX] if c.dimensions[0].value == "MALE")
    assert male.value is None
    assert [(r.rule, r.jurisdiction) for r in male.reasons] == [("INCOMPLETE_POOL", NO)]


def test_low_node_totals_withhold_the_pooled_total() -> None:
    counts = {**DEFAULT_COUNTS, FR: {(): 4}, DK: {(): 3}}
    plan = make_plan()
    result = combine(plan.tables, answered(plan, counts), POLICIES.profile)
    assert result.count.value is None
    reason = result.count.reasons[0]
    assert (reason.rule, reason.jurisdiction) == ("INCOMPLETE_POOL", None)
    assert "DK, FR" in reason.message
    fr = next(n for n in result.by_jurisdiction if n.jurisdiction is FR)
    assert fr.count is not None
    assert (fr.count.value, fr.count.status) == (None, ValueStatus.LOW)
    assert [(r.rule, r.jurisdiction) for r in fr.count.reasons] == [("BELOW_MINIMUM", FR)]


def test_partial_answer_is_flagged_and_still_released() -> None:
    plan = make_plan()
    result = combine(plan.tables, answered(plan, failed={DK: NodeStatus.TIMEOUT}), POLICIES.profile)
    assert result.count.value == 350
    assert result.count.status is ValueStatus.PERTURBED
    assert [r.rule for r in result.count.reasons] == ["NOISE", "NOISE", "PARTIAL"]
    assert result.count.reasons[-1].message == "no answer from DK (TIMEOUT)"
    dk = next(n for n in result.by_jurisdiction if n.jurisdiction is DK)
    assert (dk.status, dk.count, dk.error) == (NodeStatus.TIMEOUT, None, "down")


def noisy(n: int, sd: float = 5.0) -> Value:
    return Value(value=n, status=ValueStatus.PERTURBED, sd=sd)


def test_no_node_answered() -> None:
    plan = make_plan(SEX)
    down = dict.fromkeys(MEMBERS, NodeStatus.UNAVAILABLE)
    result = combine(plan.tables, answered(plan, failed=down), POLICIES.profile)
    assert result.count.value is None
    assert [r.rule for r in result.count.reasons] == ["NO_NODE_ANSWERED"]
    assert result.tables[SEX] == ()


def test_gateway_withholds_a_hostile_nodes_small_exact_value() -> None:
    # A node that ignores its own rules and sends FR = 4 as EXACT (vetting rejects such an
    # answer before it gets here): the gateway still re-applies FR's minimum (11) to the
    # node's count, its cells, and to every pool FR is part of.
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
    assert [(r.rule, r.jurisdiction) for r in fr.count.reasons] == [("BELOW_MINIMUM", FR)]
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
    # Pooled with FR (minimum 11), the same two parts could not make a released value below
    # 11: FR's own part is at least 11.
    with_fr = pool([(FR, noisy(11)), (DK, noisy(6)), (NO, noisy(4))])
    assert with_fr.value == 21


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
        ("DK", "UNKNOWN"),
        ("FR", "FEMALE"),
        ("FR", "MALE"),
        ("FR", "UNKNOWN"),
    ]
    swapped = cells(result.tables[(Dimension.SEX, Dimension.JURISDICTION)])
    assert swapped[("MALE", "FR")] == 120
    cell = result.tables[BY_COUNTRY_SEX][0]
    assert [(d.name, d.value) for d in cell.dimensions] == [
        (Dimension.JURISDICTION, "DK"),
        (Dimension.SEX, "FEMALE"),
    ]


def test_cells_sort_numbers_as_numbers() -> None:
    bands = {(b,): noisy(20) for b in ("90+", "10-19", "0-9", "100-109", "UNKNOWN")}
    counts = {j: {(): noisy(100), AGE10: bands} for j in MEMBERS}
    plan = make_plan(AGE10)
    result = combine(plan.tables, answered(plan, counts, honest=False), POLICIES.profile)
    assert [k[0] for k in cells(result.tables[AGE10])] == [
        "0-9",
        "10-19",
        "90+",
        "100-109",
        "UNKNOWN",
    ]


def test_pool_of_inexact_values_keeps_the_least_exact_status() -> None:
    rounded = Value(value=20, status=ValueStatus.ROUNDED, bound=2.5)
    perturbed = Value(value=30, status=ValueStatus.PERTURBED, bound=1.0, sd=4.0)
    pooled = pool([(FR, noisy(10, sd=3.0)), (DK, rounded), (NO, perturbed)])
    assert (pooled.value, pooled.status, pooled.bound) == (60, ValueStatus.PERTURBED, 3.5)
    assert pooled.sd == 5.0  # the root of the parts' variances


def test_pool_never_adds_up_withheld_parts() -> None:
    why = Reason(rule="BELOW_MINIMUM", jurisdiction=FR, message="small")
    pooled = pool([(FR, Value.low(why)), (DK, noisy(100))])
    assert pooled.value is None
    assert [r.rule for r in pooled.reasons] == ["INCOMPLETE_POOL"]


def test_a_pooled_table_does_not_depend_on_the_order_nodes_list_their_cells() -> None:
    plan = make_plan(SEX, AGE10, (Dimension.SEX, Dimension.AGE_BAND_10))
    outcomes = answered(plan)
    in_order = combine(plan.tables, outcomes, POLICIES.profile)
    # One node lists its cells backwards: the columns are no longer aligned row by row.
    fr = next(o for o in outcomes if o.jurisdiction is FR)
    backwards = {
        kind: {by: dict(reversed(list(table.items()))) for by, table in tables.items()}
        for kind, tables in fr.measures.items()
    }
    shuffled = [dataclasses.replace(fr, measures=backwards) if o is fr else o for o in outcomes]
    assert combine(plan.tables, shuffled, POLICIES.profile) == in_order
    # Cells withheld by the same nodes share their reasons; released ones keep their own.
    pooled = in_order.tables[(Dimension.SEX, Dimension.AGE_BAND_10)]
    withheld = [c.count for c in pooled if c.count.value is None]
    assert withheld
    assert all(
        [(r.rule, r.jurisdiction) for r in v.reasons] == [("INCOMPLETE_POOL", None)]
        for v in withheld
    )


def _pooled_row_by_row(
    node_cells: list[dict[tuple[str, ...], Value]], context: CellContext
) -> list[tuple[tuple[str, ...], Value]]:
    """What `pooled_cells` must give: each cell pooled from its parts and protected."""
    rules = PROTECTIONS[MeasureKind.PERSON_COUNT].gateway_rules
    return [
        (
            key,
            protect(
                pool([(j, of_node[key]) for j, of_node in zip(MEMBERS, node_cells, strict=True)]),
                context,
                rules,
            ),
        )
        for key in node_cells[0]
    ]


ROUNDED = Value(value=120, status=ValueStatus.ROUNDED, bound=2.5)
NOTED = Value(
    value=90,
    status=ValueStatus.PERTURBED,
    sd=5.0,
    reasons=[Reason(rule="NODE_NOTE", message="a note of the node")],
)


@pytest.mark.parametrize(
    "odd",
    [
        noisy(70, sd=7.5),  # like the rest: pooled column by column
        Value.low(sd=5.0),  # withheld: its row incomplete, the others column by column
        ROUNDED,  # another status, a bound: every row part by part
        NOTED,  # a reason
        Value(value=10, status=ValueStatus.PERTURBED),  # no sd
        noisy(MAX_PERSONS),  # more persons than exist
    ],
)
def test_pooled_cells_are_each_cell_pooled_part_by_part(odd: Value) -> None:
    keys = [(str(i),) for i in range(6)]
    sds = {FR: 5.0, DK: 3.25, NO: 11.0}
    node_cells = [
        {key: noisy(100 * (i + 1) + 7 * n, sd=sds[j]) for n, key in enumerate(keys)}
        for i, j in enumerate(MEMBERS)
    ]
    node_cells[1][keys[2]] = odd
    context = CellContext(
        profile=strictest(POLICIES.profile(j) for j in MEMBERS), jurisdiction=None
    )
    got = pooled_cells(MEMBERS, node_cells, context)
    assert got == _pooled_row_by_row(node_cells, context)
