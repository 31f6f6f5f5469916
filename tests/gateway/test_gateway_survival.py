"""Survival at the gateway: the curves and log-rank tests from each node's released exits
(a country's own and pooled), the consistent post-processing of noisy and withheld cells
(at risk never increasing, events never above it, a LOW exit withheld and taken at half the
minimum with its bound), and the vetting of a node's survival cells (a hostile node's are
rejected, as any count's)."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from gateway.combine import Combined, combine
from gateway.nodes import NodeOutcome
from gateway.survival import LOW_EXITS, kaplan_meier, with_survival
from gateway.vetting import vet
from policies.disclosure import BELOW_MINIMUM
from policies.loader import shipped_disclosure_profile as profile_for
from schema.codes import Dimension, EventDomain, Jurisdiction, MeasureKind, NodeStatus, ValueStatus
from schema.query import CohortQuery, Criteria, EventSpec, IndexEvent, Survival
from schema.result import Reason, Value
from schema.survival import Exit, exit_key
from schema.wire import NodeRequest
from tests.gateway.gateway_kit import APPROVAL, make_plan

FR, DK = Jurisdiction.FR, Jurisdiction.DK
COUNT = MeasureKind.PERSON_COUNT
FOLLOW = (Dimension.FOLLOW_UP,)
BY_SEX = (Dimension.FOLLOW_UP, Dimension.SEX)
SURVIVAL = Survival(outcome=EventSpec(domain=EventDomain.DEATH), interval_days=30, max_days=90)
QUERY = CohortQuery(
    criteria=Criteria(),
    reference_date=dt.date(2025, 1, 1),
    index=IndexEvent(events=[EventSpec(domain=EventDomain.DEATH)]),
    tables=[(), FOLLOW, BY_SEX],
    survival=SURVIVAL,
)
KEYS = [
    *(exit_key(s, x) for s in (0, 30, 60) for x in (Exit.EVENT, Exit.CENSORED)),
    exit_key(90, Exit.AT_RISK),
]


def noisy(n: int, sd: float = 5.0) -> Value:
    return Value(value=n, status=ValueStatus.PERTURBED, sd=sd)


def low(sd: float = 5.0) -> Value:
    return Value.low(Reason(rule=BELOW_MINIMUM), sd=sd)


def released(n: int, minimum: int = 11) -> Value:
    """A count as an honest node without noise releases it at FR's minimum."""
    return noisy(n) if n >= minimum else low()


def outcome(j: Jurisdiction, women: list[int], men: list[int]) -> NodeOutcome:
    """A node's exits (in `KEYS` order) for women and men, the unknown sex empty."""
    everyone = [w + m for w, m in zip(women, men, strict=True)]
    tables = {
        (): {(): released(sum(everyone))},
        FOLLOW: {(k,): released(n) for k, n in zip(KEYS, everyone, strict=True)},
        BY_SEX: {
            **{(k, "FEMALE"): released(n) for k, n in zip(KEYS, women, strict=True)},
            **{(k, "MALE"): released(n) for k, n in zip(KEYS, men, strict=True)},
            **{(k, "UNKNOWN"): released(0) for k in KEYS},
        },
    }
    return NodeOutcome(
        jurisdiction=j, status=NodeStatus.OK, latency_ms=1.0, measures={COUNT: tables}
    )


# In `KEYS` order: events and censorings of 0-29, 30-59 and 60-89 days, at risk at 90.
FR_WOMEN, FR_MEN = [20, 15, 30, 12, 25, 14, 100], [40, 12, 35, 20, 30, 16, 80]
DK_WOMEN, DK_MEN = [15, 12, 12, 4, 20, 18, 60], [30, 25, 20, 11, 15, 13, 50]


def answer() -> tuple[list[NodeOutcome], Combined]:
    outcomes = [outcome(FR, FR_WOMEN, FR_MEN), outcome(DK, DK_WOMEN, DK_MEN)]
    tables = list(QUERY.tables)
    combined = with_survival(combine(tables, outcomes, profile_for), QUERY, outcomes, profile_for)
    return outcomes, combined


def test_pooled_exits_are_the_countries_added_up() -> None:
    _, combined = answer()
    curves = combined.survival
    pooled_men = next(
        c for c in curves if c.jurisdiction is None and [d.value for d in c.dimensions] == ["MALE"]
    )
    men = [a + b for a, b in zip(FR_MEN, DK_MEN, strict=True)]
    expected = kaplan_meier(men[0:-1:2], men[1:-1:2], men[-1])
    assert [s.at_risk.value for s in pooled_men.steps] == list(expected.at_risk)
    assert [s.survival.value for s in pooled_men.steps] == pytest.approx(expected.survival)
    # The noise of a pooled exit: the root of its parts' variances.
    assert pooled_men.steps[0].events.sd == pytest.approx(5 * 2**0.5)
    for step in pooled_men.steps:
        low_band, s, high_band = step.ci_low.value, step.survival.value, step.ci_high.value
        assert low_band is not None
        assert s is not None
        assert high_band is not None
        assert low_band <= s <= high_band
        assert (step.survival.sd or 0) > 0


def test_a_low_exit_stays_withheld_and_what_is_derived_from_it_says_so() -> None:
    _, combined = answer()
    curves = combined.survival
    dk_women = next(
        c for c in curves if c.jurisdiction is DK and [d.value for d in c.dimensions] == ["FEMALE"]
    )
    # DK's 4 women censored in 30-59 are LOW: withheld, and taken at half FR's minimum.
    step = dk_women.steps[1]
    assert step.censored.status is ValueStatus.LOW
    assert step.censored.value is None
    later = dk_women.steps[1].at_risk
    assert later.value == pytest.approx(sum(DK_WOMEN[2:]) - 4 + profile_for(DK).min_count / 2)
    assert later.bound == pytest.approx(profile_for(DK).min_count / 2)
    assert LOW_EXITS in {r.rule for r in dk_women.steps[0].survival.reasons}
    assert dk_women.steps[0].survival.bound is not None


def test_at_risk_never_increases_and_events_never_exceed_it() -> None:
    _, combined = answer()
    for curve in combined.survival:
        shown = [s for s in curve.steps if s.at_risk.value is not None]
        at_risk = [s.at_risk.value or 0 for s in shown]
        assert at_risk == sorted(at_risk, reverse=True)
        for s in shown:
            assert s.at_risk.value is not None
            assert s.events.value is None or s.events.value <= s.at_risk.value


def test_log_rank_between_the_sexes_per_country_and_pooled() -> None:
    _, combined = answer()
    tests = combined.log_rank
    assert [t.jurisdiction for t in tests] == [FR, DK, None]
    assert all(t.groups == ["FEMALE", "MALE"] and t.degrees_of_freedom == 1 for t in tests)
    assert all(0 <= (t.p_value.value or 0) <= 1 for t in tests)


def request_for(j: Jurisdiction) -> NodeRequest:
    request = make_plan(()).node_request(j, APPROVAL)
    return request.model_copy(update={"query": QUERY})


def test_an_honest_nodes_exits_pass() -> None:
    result = vet(outcome(FR, FR_WOMEN, FR_MEN), profile_for(FR), request_for(FR))
    assert result.status is NodeStatus.OK, result.message


def hostile(change: str) -> NodeOutcome:
    node = outcome(FR, FR_WOMEN, FR_MEN)
    tables = {by: dict(cells) for by, cells in node.measures[COUNT].items()}
    if change == "a key outside the question's intervals":
        tables[FOLLOW][("45:EVENT",)] = noisy(12)
    elif change == "an exit larger than the cohort":
        tables[FOLLOW][("0:EVENT",)] = noisy(10_000)
    elif change == "an exit below the minimum, released":
        tables[FOLLOW][("0:EVENT",)] = noisy(4)
    elif change == "an exit without the published noise":
        tables[FOLLOW][("0:EVENT",)] = Value(value=60, status=ValueStatus.EXACT)
    elif change == "a missing interval":
        del tables[BY_SEX][("60:CENSORED", "MALE")]
    return NodeOutcome(
        jurisdiction=FR, status=NodeStatus.OK, latency_ms=1.0, measures={COUNT: tables}
    )


@pytest.mark.parametrize(
    "change",
    [
        "a key outside the question's intervals",
        "an exit larger than the cohort",
        "an exit below the minimum, released",
        "an exit without the published noise",
        "a missing interval",
    ],
)
def test_a_hostile_nodes_survival_cells_are_rejected(change: str) -> None:
    result = vet(hostile(change), profile_for(FR), request_for(FR))
    assert result.status is NodeStatus.REJECTED, change


def test_a_group_whose_every_exit_is_withheld_shows_nothing_and_is_not_compared() -> None:
    _, combined = answer()
    unknown = [c for c in combined.survival if [d.value for d in c.dimensions] == ["UNKNOWN"]]
    assert unknown
    for curve in unknown:
        for step in curve.steps:
            assert step.survival.value is None
            assert step.survival.status is ValueStatus.LOW
            assert step.at_risk.value is None
    assert all("UNKNOWN" not in t.groups for t in combined.log_rank)


def rounded(n: int, base: int = 10, bound: float = 5.0) -> Value:
    """A count as a node rounding to `base` releases it (no noise): its bound says how far
    rounding moved it."""
    return Value(
        value=base * ((2 * n + base) // (2 * base)),
        status=ValueStatus.ROUNDED,
        bound=bound,
    )


def test_a_nodes_rounding_bound_is_carried_into_the_curve() -> None:
    # Every exit rounded to 10 at the node (bound 5): the number at risk is a sum of its
    # cells, so its bound is theirs added up; S and its band carry the enclosure's bound, and
    # the curve of any truth the roundings allow lies within it.
    exits = [20, 15, 30, 22, 25, 24, 100]  # each at least the minimum once rounded
    tables = {
        (): {(): rounded(sum(exits))},
        FOLLOW: {(k,): rounded(n) for k, n in zip(KEYS, exits, strict=True)},
    }
    node = NodeOutcome(
        jurisdiction=FR, status=NodeStatus.OK, latency_ms=1.0, measures={COUNT: tables}
    )
    query = QUERY.model_copy(update={"tables": [(), FOLLOW]})
    combined = with_survival(
        combine(list(query.tables), [node], profile_for), query, [node], profile_for
    )
    (curve,) = [c for c in combined.survival if c.jurisdiction is None]
    released = [rounded(n).value or 0 for n in exits]
    for k, step in enumerate(curve.steps):
        assert step.at_risk.bound == pytest.approx(5.0 * (len(exits) - 2 * k))
        assert step.events.bound == pytest.approx(5.0)
        assert step.survival.status is ValueStatus.ROUNDED
        assert (step.survival.bound or 0) > 0
        assert (step.ci_low.bound or 0) > 0
        assert (step.ci_high.bound or 0) > 0
    # Any truth within the roundings: its curve within each step's bound of the shown one.
    rng = random.Random(7)
    for _ in range(2_000):
        truth = [max(v + rng.uniform(-5, 5), 0.0) for v in released]
        if rng.random() < 0.2:  # the corners too
            truth = [max(v + rng.choice((-5, 5)), 0.0) for v in released]
        exact = kaplan_meier(truth[0:-1:2], truth[1:-1:2], truth[-1])
        for k, step in enumerate(curve.steps):
            shown, bound, s = step.survival.value, step.survival.bound, exact.survival[k]
            assert shown is not None
            assert bound is not None
            assert s is not None
            assert abs(s - shown) <= bound + 1e-12
