"""Vetting a node's incidence-rate cells before they count (`gateway.vetting` runs it on
every OK answer). Each measure has passed the per-measure checks (noisy as published, at its
sensitivity; events at least the minimum); these look across a cell's measures, as
`gateway.vetting.linked_sums` does for a variable's sums:

- days at risk are withheld wherever the cell's count of persons is (a magnitude over fewer
  persons than the minimum is never released);
- released days pass the node's published magnitude rules (`policies.person_time`: they read
  the released value and the public clipping, so the gateway checks them exactly);
- a cell's events are no more than its persons, and its days no more than its persons times
  the follow-up's length, beyond what their noise allows.

A node failing one is REJECTED whole, as every other vetting failure. Messages never carry a
value."""

from __future__ import annotations

import math
from collections.abc import Mapping

from policies.person_time import person_time_reasons
from policies.profiles import DisclosureProfile
from schema.codes import MeasureKind, ValueStatus
from schema.query import Breakdown, CohortQuery
from schema.result import Value

COUNT, EVENTS, DAYS = (
    MeasureKind.PERSON_COUNT,
    MeasureKind.OUTCOME_EVENTS,
    MeasureKind.PERSON_DAYS,
)
# As `gateway.vetting`: six sds of its noise, beyond which a value is not the truth's.
_NOISE_SLACK_SDS = 6.0

Tables = Mapping[Breakdown, Mapping[tuple[str, ...], Value]]


def _slack(value: Value) -> float:
    if value.sd is None:
        return 0.0 if value.status is ValueStatus.EXACT else math.inf
    return _NOISE_SLACK_SDS * value.sd


def rate_cells(
    measures: Mapping[MeasureKind, Tables], profile: DisclosureProfile, query: CohortQuery
) -> str | None:
    """The first problem with a node's rate cells, or None (also for a question without a
    rate)."""
    days_tables = measures.get(DAYS)
    if days_tables is None or query.outcome is None:
        return None
    most = query.outcome.days
    counts = measures.get(COUNT, {})
    events = measures.get(EVENTS, {})
    for by, cells in days_tables.items():
        of_count, of_events = counts.get(by, {}), events.get(by, {})
        for key, days in cells.items():
            n, d = of_count.get(key), of_events.get(key)
            if n is None or d is None:
                return "a cell's days at risk come without its count or its events"
            problem = _cell(n, d, days, most, profile)
            if problem is not None:
                return problem
    return None


def _cell(n: Value, d: Value, days: Value, most: int, profile: DisclosureProfile) -> str | None:
    if n.withheld and not days.withheld:
        return "days at risk released beside a withheld count of persons"
    if days.value is not None and person_time_reasons(days.value, most, profile, None):
        return "days at risk released though the node's magnitude rules withhold them"
    persons, outcomes, at_risk = n.value, d.value, days.value
    if persons is None:
        return None
    if outcomes is not None and outcomes > persons + math.hypot(_slack(d), _slack(n)):
        return "more outcomes than persons in a cell"
    if at_risk is not None and at_risk > persons * most + math.hypot(
        _slack(days), most * _slack(n)
    ):
        return "more days at risk than a cell's persons can have"
    return None
