"""The disclosure pipeline's rules: what a noisy count becomes (LOW below the minimum, zeros
included; PERTURBED with its sd otherwise), rounding, the strictest profile of several,
the public domain of tables, and the magnitude rules."""

from __future__ import annotations

import datetime as dt

import pytest

from policies.disclosure import (
    BELOW_MINIMUM,
    GATEWAY_RULES,
    NODE_RULES,
    NOISE,
    CellContext,
    gateway_settled_from,
    protect,
    release,
    round_to_base,
)
from policies.domain import dimension_domain, table_cells, table_domain
from policies.magnitude import DOMINANCE, P_PERCENT, Magnitude, sensitive
from policies.profiles import COARSE_FACTOR, DisclosureProfile, strictest
from schema.codes import Dimension, Jurisdiction, NoiseLevel, ValueStatus
from schema.query import CohortQuery, Criteria
from schema.result import Value
from schema.wire import KEY_DOMAINS

SEX, AGE, AGE5, YEAR = (
    Dimension.SEX,
    Dimension.AGE_BAND_10,
    Dimension.AGE_BAND_5,
    Dimension.CALENDAR_YEAR,
)
FR = DisclosureProfile(min_count=11, source="test")
FR_CTX = CellContext(FR, Jurisdiction.FR)


# -- what a noisy count becomes ---------------------------------------------------------------
@pytest.mark.parametrize("noisy", [-7, 0, 1, 10])
def test_a_noisy_count_below_the_minimum_is_low_without_a_value(noisy: int) -> None:
    value = release(noisy, 5.0, FR_CTX)
    assert (value.value, value.status, value.sd) == (None, ValueStatus.LOW, 5.0)
    assert [r.rule for r in value.reasons] == [BELOW_MINIMUM]
    # The reason says the rule, never the value or whether it was zero.
    assert str(noisy) not in value.reasons[0].message.replace("11", "")


@pytest.mark.parametrize("noisy", [11, 12, 5000])
def test_a_noisy_count_at_or_above_the_minimum_is_released_with_its_sd(noisy: int) -> None:
    value = release(noisy, 5.0, FR_CTX)
    assert (value.value, value.status, value.sd, value.bound) == (
        noisy,
        ValueStatus.PERTURBED,
        5.0,
        None,
    )
    assert [r.rule for r in value.reasons] == [NOISE]
    Value.model_validate(value.model_dump())  # built without validation, and valid


def test_every_cell_of_an_answer_shares_its_reasons() -> None:
    # One Reason object per jurisdiction and sd: thousands of cells cost no allocation each.
    assert release(20, 5.0, FR_CTX).reasons[0] is release(30, 5.0, FR_CTX).reasons[0]
    assert release(1, 5.0, FR_CTX).reasons[0] is release(2, 5.0, FR_CTX).reasons[0]


@pytest.mark.parametrize(
    ("count", "expected"), [(11, 20), (14, 20), (15, 20), (24, 20), (25, 30), (1234, 1230)]
)
def test_rounding_is_deterministic_and_never_below_the_minimum(count: int, expected: int) -> None:
    profile = FR.model_copy(update={"rounding_base": 10})
    ctx = CellContext(profile, Jurisdiction.FR)
    values = {protect(release(count, 5.0, ctx), ctx, NODE_RULES).value for _ in range(5)}
    assert values == {expected}
    rounded = protect(release(count, 5.0, ctx), ctx, (round_to_base,))
    assert (rounded.status, rounded.sd) == (ValueStatus.PERTURBED, 5.0)
    assert rounded.bound == 9.0  # the clamp to 20 may move 11 by 9; the same for every cell


def test_the_gateway_keeps_a_pooled_value_at_the_strictest_minimum() -> None:
    pooled = Value(value=8, status=ValueStatus.PERTURBED, sd=7.0)
    checked = protect(pooled, FR_CTX, GATEWAY_RULES)
    assert (checked.value, checked.status, checked.sd) == (None, ValueStatus.LOW, 7.0)
    assert protect(pooled.model_copy(update={"value": 11}), FR_CTX, GATEWAY_RULES).value == 11


def test_a_withheld_value_has_no_value_and_a_value_has_a_status_that_says_so() -> None:
    with pytest.raises(ValueError, match="withheld"):
        Value(value=3, status=ValueStatus.LOW)
    with pytest.raises(ValueError, match="withheld"):
        Value(value=None, status=ValueStatus.PERTURBED)


# -- profiles ---------------------------------------------------------------------------------
def test_strictest_profile_composes_every_rule() -> None:
    a = FR.model_copy(update={"rounding_base": 5, "sigma": 6.0, "rho_per_organisation": 0.3})
    b = DisclosureProfile(
        min_count=5,
        source="b",
        rounding_base=3,
        sigma=8.0,
        rho_per_applicant=0.2,
        dominance_n=2,
        dominance_k=80,
    )
    both = strictest([a, b])
    assert (both.min_count, both.rounding_base, both.sigma) == (11, 15, 8.0)
    assert (both.rho_per_applicant, both.rho_per_organisation) == (0.2, 0.3)
    assert (both.dominance_n, both.dominance_k) == (2, 80)
    assert both.is_stricter_or_equal(a)
    assert both.is_stricter_or_equal(b)
    assert not a.is_stricter_or_equal(both)


def test_coarse_noise_is_twice_the_standard_sd() -> None:
    assert FR.noise_sd(NoiseLevel.STANDARD) == 5.0
    assert FR.noise_sd(NoiseLevel.COARSE) == 5.0 * COARSE_FACTOR == 10.0


def test_no_profile_allows_more_than_the_budget_that_keeps_counts_uncertain() -> None:
    with pytest.raises(ValueError, match=r"0\.5"):
        DisclosureProfile(min_count=11, source="x", rho_per_applicant=0.6)


# -- the public domain of a table -------------------------------------------------------------
def query(**criteria: object) -> CohortQuery:
    return CohortQuery(
        criteria=Criteria.model_validate(criteria), reference_date=dt.date(2026, 1, 1)
    )


def test_the_domain_follows_from_the_question_alone() -> None:
    anyone = query()
    assert dimension_domain(SEX, anyone) == ("FEMALE", "MALE", "UNKNOWN")
    assert dimension_domain(SEX, query(sex="FEMALE")) == ("FEMALE",)
    assert dimension_domain(AGE, query(age={"min": 40, "max": 69})) == ("40-49", "50-59", "60-69")
    assert dimension_domain(AGE5, query(age={"min": 42, "max": 43})) == ("40-44",)
    assert len(dimension_domain(AGE5, anyone)) == 27  # ages 0..130
    years = dimension_domain(YEAR, anyone)
    # Without an index event persons are dated by their observation period, which some lack;
    # years after the reference date are not part of the question.
    assert (years[0], years[-2], years[-1]) == ("1900", "2026", "UNKNOWN")
    windowed = query(
        conditions=[
            {"vocabulary": "ICD10", "code": "E11", "window": {"start": "2019-03-01", "end": None}}
        ]
    )
    assert dimension_domain(YEAR, windowed) == tuple(str(y) for y in range(2019, 2027))


def test_a_table_domain_is_every_combination_and_every_key_is_one_a_node_may_send() -> None:
    asked = query(age={"min": 40, "max": 69})
    cells = table_domain((SEX, AGE), asked)
    assert len(cells) == table_cells((SEX, AGE), asked) == 9
    assert len(set(cells)) == len(cells)
    for key in cells:
        assert key[0] in KEY_DOMAINS[SEX]
        assert key[1] in KEY_DOMAINS[AGE]
    assert table_domain((), asked) == [()]


# -- magnitudes ------------------------------------------------------------------------------
DE = DisclosureProfile(min_count=3, source="test", dominance_n=1, dominance_k=85, p_percent=10)


def test_one_dominant_contributor_makes_a_cell_sensitive() -> None:
    cell = Magnitude.of([900.0, 50.0, 30.0, 20.0])  # the largest is 90%
    assert [r.rule for r in sensitive(cell, DE, Jurisdiction.DE)] == [DOMINANCE, P_PERCENT]


def test_the_p_percent_rule_catches_two_large_contributors() -> None:
    cell = Magnitude.of([500.0, 470.0, 20.0, 10.0])  # the rest is 6% of the largest
    assert [r.rule for r in sensitive(cell, DE, Jurisdiction.DE)] == [P_PERCENT]


def test_a_spread_out_magnitude_is_released() -> None:
    cell = Magnitude.of([100.0] * 10)
    assert sensitive(cell, DE, Jurisdiction.DE) == []
    assert sensitive(Magnitude.of([1.0]), FR, Jurisdiction.FR) == []  # no rules stated


def test_magnitudes_are_non_negative() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        Magnitude.of([-1.0])


@pytest.mark.parametrize("min_count", [1, 3, 11])
@pytest.mark.parametrize("base", [1, 5])
def test_a_value_the_gateway_s_shortcut_passes_is_one_its_rules_leave_as_it_is(
    min_count: int, base: int
) -> None:
    profile = DisclosureProfile(min_count=min_count, rounding_base=base, source="test")
    ctx = CellContext(profile, Jurisdiction.FR)
    settled = gateway_settled_from(ctx)
    assert (settled is None) == (base != 1)
    values = [release(n, 5.0, ctx) for n in range(-3, 40)] + [Value.low(sd=5.0)]
    for value in values:
        n = value.value
        if settled is not None and (n is None or n >= settled):
            assert protect(value, ctx, GATEWAY_RULES) is value
    # Just below it the rules act (a node claiming a released value under its minimum): the
    # shortcut stops where they start.
    if settled is not None and settled > 1:
        lenient = CellContext(DisclosureProfile(min_count=1, source="test"), Jurisdiction.FR)
        below = release(settled - 1, 5.0, lenient)
        assert below.value == settled - 1
        assert protect(below, ctx, GATEWAY_RULES).value is None
