"""Release rules for pooled numbers shown next to per-node numbers: a pool that would give a
withheld part away is suppressed (ISOLATES_NODE); a pool over part of the nodes is marked or
suppressed as configured (PARTIAL)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.combine import Combined, combine
from gateway.federation import NodeInfo
from gateway.nodes import MockNodeClient, NodeOutcome
from gateway.planner import Plan
from gateway.pool_guard import ISOLATES_NODE, guard_pools
from gateway.settings import GatewaySettings, PartialPools
from schema.codes import Dimension, Jurisdiction, NodeStatus, ValueStatus
from schema.query import Breakdown
from schema.result import Cell, Reason, Value
from schema.wire import NodeRequest, NodeResponse
from tests.gateway.gateway_kit import (
    POLICIES,
    SEX,
    Keys,
    answered,
    cells,
    counts_handler,
    make_plan,
    mint,
    write_federation,
)

FR, DK, NO = Jurisdiction.FR, Jurisdiction.DK, Jurisdiction.NO
SEX_BY_COUNTRY: Breakdown = (Dimension.SEX, Dimension.JURISDICTION)
WITHHELD = Value.suppressed(Reason(rule="SECONDARY_SUPPRESSION", message="complement"))


def withhold_node_total(combined: Combined, j: Jurisdiction) -> Combined:
    """What a later rule (e.g. secondary suppression) might do to one node's shown count."""
    nodes = tuple(
        dataclasses.replace(n, count=WITHHELD) if n.jurisdiction is j else n
        for n in combined.by_jurisdiction
    )
    return dataclasses.replace(combined, by_jurisdiction=nodes)


def withhold_cell(combined: Combined, table: Breakdown, match: dict[str, str]) -> Combined:
    def hit(cell: Cell) -> bool:
        return all(any(d.value == v for d in cell.dimensions) for v in match.values())

    tables = dict(combined.tables)
    tables[table] = tuple(
        c.model_copy(update={"count": WITHHELD}) if hit(c) else c for c in tables[table]
    )
    return dataclasses.replace(combined, tables=tables)


def test_nothing_changes_when_every_part_is_shown() -> None:
    plan = make_plan(SEX, SEX_BY_COUNTRY)
    outcomes = answered(plan)
    combined = combine(plan.tables, outcomes, POLICIES.profile)
    assert guard_pools(combined, outcomes) == combined


def test_a_total_that_would_isolate_one_withheld_node_is_suppressed() -> None:
    plan = make_plan()
    outcomes = answered(plan)
    combined = withhold_node_total(combine(plan.tables, outcomes, POLICIES.profile), DK)
    assert combined.count.value == 500  # released: the sum minus FR and NO would be DK's
    guarded = guard_pools(combined, outcomes)
    assert guarded.count.value is None
    assert [(r.rule, r.jurisdiction) for r in guarded.count.reasons] == [(ISOLATES_NODE, DK)]


def test_two_withheld_parts_are_not_given_away_as_a_sum_either() -> None:
    plan = make_plan()
    outcomes = answered(plan)
    combined = withhold_node_total(
        withhold_node_total(combine(plan.tables, outcomes, POLICIES.profile), DK), NO
    )
    guarded = guard_pools(combined, outcomes)
    assert guarded.count.value is None
    assert [r.rule for r in guarded.count.reasons] == ["INCOMPLETE_POOL"]


def test_a_pooled_cell_next_to_its_per_node_cells_is_guarded_the_same_way() -> None:
    plan = make_plan(SEX, SEX_BY_COUNTRY)
    outcomes = answered(plan)
    combined = withhold_cell(
        combine(plan.tables, outcomes, POLICIES.profile),
        SEX_BY_COUNTRY,
        {"SEX": "MALE", "JURISDICTION": "NO"},
    )
    guarded = guard_pools(combined, outcomes)
    pooled = cells(guarded.tables[SEX])
    assert pooled[("MALE",)] is None
    assert pooled[("FEMALE",)] == 300  # its parts are all shown
    male = next(c for c in guarded.tables[SEX] if c.dimensions[0].value == "MALE")
    assert [(r.rule, r.jurisdiction) for r in male.count.reasons] == [(ISOLATES_NODE, NO)]
    # Per-node cells are left as they are.
    assert guarded.tables[SEX_BY_COUNTRY] == combined.tables[SEX_BY_COUNTRY]


def test_without_per_node_cells_a_pooled_cell_isolates_nothing() -> None:
    plan = make_plan(SEX)
    outcomes = answered(plan)
    combined = combine(plan.tables, outcomes, POLICIES.profile)
    assert guard_pools(combined, outcomes).tables == combined.tables


def failed_dk(plan: Plan) -> list[NodeOutcome]:
    return answered(plan, failed={DK: NodeStatus.TIMEOUT})


def test_partial_pools_are_marked_by_default() -> None:
    plan = make_plan(SEX)
    outcomes = failed_dk(plan)
    guarded = guard_pools(combine(plan.tables, outcomes, POLICIES.profile), outcomes)
    assert guarded.count.value == 350
    assert "PARTIAL" in [r.rule for r in guarded.count.reasons]
    assert cells(guarded.tables[SEX]) == {("FEMALE",): 210, ("MALE",): 140, ("UNKNOWN",): None}


def test_partial_pools_can_be_suppressed() -> None:
    plan = make_plan(SEX, SEX_BY_COUNTRY)
    outcomes = failed_dk(plan)
    guarded = guard_pools(
        combine(plan.tables, outcomes, POLICIES.profile), outcomes, PartialPools.SUPPRESS
    )
    assert guarded.count.value is None
    assert guarded.count.status is ValueStatus.SUPPRESSED
    assert guarded.count.reasons[-1].rule == "PARTIAL"
    assert "DK (TIMEOUT)" in guarded.count.reasons[-1].message
    assert set(cells(guarded.tables[SEX]).values()) == {None}
    # Each node's own numbers are not pools: they stay.
    assert {v for v in cells(guarded.tables[SEX_BY_COUNTRY]).values()} == {180, 120, 30, 20, None}
    assert {n.jurisdiction: n.count.value for n in guarded.by_jurisdiction if n.count} == {
        FR: 300,
        NO: 50,
    }


def test_a_denied_node_is_not_a_failure() -> None:
    plan = make_plan()
    outcomes = answered(plan, failed={DK: NodeStatus.DENIED})
    guarded = guard_pools(
        combine(plan.tables, outcomes, POLICIES.profile), outcomes, PartialPools.SUPPRESS
    )
    assert guarded.count.value == 350


async def test_the_gateway_applies_the_partial_policy(tmp_path: Path, keys: Keys) -> None:
    answer = counts_handler()

    def handler(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        if node.jurisdiction is DK:
            raise ConnectionResetError
        return answer(node, request)  # type: ignore[return-value]

    settings = GatewaySettings.from_env(
        {}, federation=write_federation(tmp_path, keys), partial_pools=PartialPools.SUPPRESS
    )
    app = create_app(settings, node_client=MockNodeClient(handler))
    async with TestClient(TestServer(app)) as client:
        response = await client.post(
            "/graphql",
            json={
                "query": '{ cohort(request: "DR-2026-0042", criteria: {}) '
                "{ count { value reasons { rule } } } }"
            },
            headers={"Authorization": f"Bearer {mint(keys)}"},
        )
        count = (await response.json())["data"]["cohort"]["count"]
    assert count["value"] is None
    assert count["reasons"][-1]["rule"] == "PARTIAL"
