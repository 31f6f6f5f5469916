"""An incidence rate at the gateway: each node's released events and days at risk pooled by
summing (a country's own and the pooled ones), the rate per the person-years asked and its
exact Poisson interval, withheld where events or days are; and the vetting of a node's rate
cells (days beside a withheld count, days its magnitude rules withhold, more events than
persons, more days than persons can have, too little noise on the days)."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from gateway.combine import combine
from gateway.nodes import NodeOutcome
from gateway.rates import DAYS_PER_YEAR, poisson_interval, with_rates
from gateway.vetting import vet
from policies.disclosure import BELOW_MINIMUM
from policies.loader import shipped_disclosure_profile as profile_for
from policies.magnitude import DOMINANCE
from policies.measures import COUNT_WITHHELD
from schema.codes import Dimension, Jurisdiction, MeasureKind, NodeStatus, ValueStatus
from schema.query import RATES, CohortQuery
from schema.result import Reason, Value
from schema.wire import NodeRequest
from tests.gateway.gateway_kit import APPROVAL, make_plan

FR, DE = Jurisdiction.FR, Jurisdiction.DE
COUNT = MeasureKind.PERSON_COUNT
EVENTS, DAYS = RATES
SEX = (Dimension.SEX,)
WINDOW = 21  # days 1 to 21 after the index: at most 21 days a person
SD = 5.0

Cells = dict[tuple[str, ...], dict[MeasureKind, Value]]


def query() -> CohortQuery:
    return CohortQuery.model_validate(
        {
            "criteria": {},
            "reference_date": dt.date(2025, 1, 1),
            "index": {
                "events": [{"domain": "DRUG", "codes": [{"vocabulary": "ATC", "code": "J07BN01"}]}]
            },
            "outcome": {
                "event": {"domain": "CONDITION", "codes": [{"vocabulary": "ICD10", "code": "I40"}]},
                "window": {"start_days": 1, "end_days": WINDOW},
            },
            "measures": [{"kind": k} for k in (COUNT, *RATES)],
            "tables": [(), SEX],
        }
    )


def noisy(n: int, sd: float = SD) -> Value:
    return Value(value=n, status=ValueStatus.PERTURBED, sd=sd)


def released(persons: int, events: int, days: int, minimum: int = 11) -> dict[MeasureKind, Value]:
    """A cell as an honest node without noise releases it (days withheld with a low count)."""
    low = Value.low(Reason(rule=BELOW_MINIMUM), sd=SD)
    return {
        COUNT: noisy(persons) if persons >= minimum else low,
        EVENTS: noisy(events) if events >= minimum else low,
        DAYS: noisy(days, SD * WINDOW)
        if persons >= minimum
        else Value.low(Reason(rule=COUNT_WITHHELD), sd=SD * WINDOW),
    }


def outcome(j: Jurisdiction, cells: Cells) -> NodeOutcome:
    measures = {
        kind: {
            (): {(): cells[()][kind]},
            SEX: {key: values[kind] for key, values in cells.items() if key},
        }
        for kind in (COUNT, *RATES)
    }
    return NodeOutcome(jurisdiction=j, status=NodeStatus.OK, latency_ms=1.0, measures=measures)


# (persons, events, days at risk) per sex.
FR_CELLS = {("FEMALE",): (4000, 12, 80_000), ("MALE",): (3000, 30, 60_000), ("UNKNOWN",): (0, 0, 0)}
DE_CELLS = {("FEMALE",): (5000, 15, 99_000), ("MALE",): (6, 1, 100), ("UNKNOWN",): (0, 0, 0)}


def cells_of(of_sex: dict[tuple[str, ...], tuple[int, int, int]], minimum: int = 11) -> Cells:
    total = tuple(sum(v[i] for v in of_sex.values()) for i in range(3))
    return {
        (): released(*total, minimum=minimum),
        **{k: released(*v, minimum=minimum) for k, v in of_sex.items()},
    }


def request_for(j: Jurisdiction) -> NodeRequest:
    request = make_plan(SEX).node_request(j, APPROVAL)
    return request.model_copy(update={"query": query()})


def test_rates_per_country_and_pooled() -> None:
    outcomes = [outcome(FR, cells_of(FR_CELLS)), outcome(DE, cells_of(DE_CELLS, minimum=3))]
    tables = [(), SEX]
    combined = with_rates(
        combine(tables, outcomes, profile_for), query(), tables, outcomes, profile_for, 100_000
    )
    events = 12 + 30 + 15 + 1
    days = 80_000 + 60_000 + 99_000 + 100
    assert combined.rate is not None
    assert combined.rate.events.value == events
    assert combined.rate.person_years.value == pytest.approx(days / DAYS_PER_YEAR)
    years = days / DAYS_PER_YEAR
    assert combined.rate.rate.value == pytest.approx(events / years * 100_000)
    low, high = poisson_interval(events)
    assert combined.rate.ci_low.value == pytest.approx(low / years * 100_000)
    assert combined.rate.ci_high.value == pytest.approx(high / years * 100_000)
    assert combined.rate.per == 100_000
    # The pooled noise: the root of the parts' variances; the rate's to first order.
    assert combined.rate.events.sd == pytest.approx(SD * math.sqrt(2))
    sd_days = SD * WINDOW * math.sqrt(2) / DAYS_PER_YEAR
    expected_sd = 100_000 * math.hypot(SD * math.sqrt(2) / years, events / years**2 * sd_days)
    assert combined.rate.rate.sd == pytest.approx(expected_sd)
    fr, de = combined.by_jurisdiction
    assert fr.rate is not None
    assert de.rate is not None
    assert fr.rate.rate.value == pytest.approx(42 / (140_000 / DAYS_PER_YEAR) * 100_000)
    by_sex = {c.dimensions[0].value: c.rate for c in combined.tables[SEX]}
    women = by_sex["FEMALE"]
    assert women is not None
    assert women.rate.value == pytest.approx(27 / (179_000 / DAYS_PER_YEAR) * 100_000)
    # France's men have 30 events; Germany's 1 is below its minimum of 3: the pooled
    # events are withheld (INCOMPLETE_POOL), and the rate with them.
    men = by_sex["MALE"]
    assert men is not None
    assert men.rate.value is None
    assert men.events.value is None


def test_an_honest_nodes_rate_cells_pass() -> None:
    result = vet(outcome(FR, cells_of(FR_CELLS)), profile_for(FR), request_for(FR))
    assert result.status is NodeStatus.OK


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        # Days released beside a LOW count: a magnitude over fewer persons than the minimum.
        ({DAYS: noisy(100, SD * WINDOW)}, "withheld count"),
        # Days with a count's noise, not the window's length times it.
        ({DAYS: noisy(80_000)}, "less noise"),
        # More events than persons, beyond their noise (within the total's events).
        ({COUNT: noisy(11), EVENTS: noisy(80)}, "more outcomes"),
        # More days than 20 persons can have in 21 days each.
        ({COUNT: noisy(20), DAYS: noisy(20_000, SD * WINDOW)}, "more days at risk"),
    ],
)
def test_a_node_breaking_its_rate_rules_is_rejected(
    change: dict[MeasureKind, Value], problem: str
) -> None:
    cells = cells_of(FR_CELLS)
    cells[("UNKNOWN",)] |= change
    result = vet(outcome(FR, cells), profile_for(FR), request_for(FR))
    assert result.status is NodeStatus.REJECTED
    assert problem in (result.message or "")


def test_a_node_releasing_days_its_dominance_rule_withholds_is_rejected() -> None:
    # Germany's (1, 85) dominance rule: 20 days where one person may have 21 is dominated.
    cells = cells_of(DE_CELLS, minimum=3)
    cells[("MALE",)] = {COUNT: noisy(6), EVENTS: Value.low(sd=SD), DAYS: noisy(20, SD * WINDOW)}
    result = vet(outcome(DE, cells), profile_for(DE), request_for(DE))
    assert result.status is NodeStatus.REJECTED
    assert "magnitude rules" in (result.message or "")


def test_days_a_nodes_magnitude_rule_withheld_pass() -> None:
    # Germany withholds 20 days of 6 persons (one may have 21: dominated), SUPPRESSED.
    cells = cells_of(DE_CELLS, minimum=3)
    dominated = Value.suppressed(Reason(rule=DOMINANCE, jurisdiction=DE))
    cells[("MALE",)] = {COUNT: noisy(6), EVENTS: Value.low(sd=SD), DAYS: dominated}
    assert vet(outcome(DE, cells), profile_for(DE), request_for(DE)).status is NodeStatus.OK
    # A count is never SUPPRESSED by a node: LOW below its minimum, or released.
    cells[("MALE",)] = {COUNT: Value.suppressed(), EVENTS: Value.low(sd=SD), DAYS: dominated}
    result = vet(outcome(DE, cells), profile_for(DE), request_for(DE))
    assert result.status is NodeStatus.REJECTED
