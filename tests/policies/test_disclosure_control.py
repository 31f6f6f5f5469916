"""The disclosure pipeline's rules against the attacks they exist for: margin subtraction
(solved by an integer-programming attacker), averaging, rounding, magnitudes."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest

from policies.disclosure import (
    CELL_KEY_PERTURBATION,
    NO_CELL_KEY,
    CellContext,
    perturb,
    protect_count,
    protect_tables,
    round_to_base,
)
from policies.magnitude import DOMINANCE, P_PERCENT, Magnitude, sensitive
from policies.perturbation import CELL_KEY_MODULUS, perturbation_table
from policies.profiles import DisclosureProfile, ZeroHandling, strictest
from policies.tables import PRIMARY_SUPPRESSION, SECONDARY_SUPPRESSION, TableCell, TableSet
from schema.codes import Dimension, Jurisdiction, ValueStatus
from schema.query import Breakdown
from schema.result import Value
from tests.attacker import narrowed, small_counts

SEX, AGE = Dimension.SEX, Dimension.AGE_BAND_10
FR = DisclosureProfile(min_count=11, source="test")
NO_SECONDARY = FR.model_copy(update={"secondary_suppression": False})
Counts = Mapping[tuple[str, str], int]


# -- cell-key perturbation -------------------------------------------------------------------
@pytest.mark.parametrize(("t", "d", "v"), [(3, 2, 1.0), (11, 3, 2.0), (5, 5, 4.0), (10, 1, 0.5)])
def test_every_perturbation_table_is_unbiased_bounded_and_releases_no_small_value(
    t: int, d: int, v: float
) -> None:
    table = perturbation_table(t, d, v)
    for row in table.rows:
        assert sum(row.probabilities) == pytest.approx(1.0)
        assert row.mean == pytest.approx(0.0, abs=1e-9)
        assert row.variance <= v + 1e-9
        assert all(abs(noise) <= d for noise in row.noise)
        assert all(row.count + noise >= t for noise in row.noise)
        assert all(p > 0 for p in row.probabilities)
    # Far from the threshold every row is the same, with the full variance.
    assert table.rows[-1].variance == pytest.approx(v)
    assert table.row(t + 1000) is table.rows[-1]


def test_noise_is_uniform_over_cell_keys_as_the_table_says() -> None:
    table = perturbation_table(11, 3, 2.0)
    rng = random.Random(5)
    draws = [table.noise(500, rng.randrange(CELL_KEY_MODULUS)) for _ in range(20_000)]
    assert sum(draws) / len(draws) == pytest.approx(0.0, abs=0.05)
    variance = sum(x * x for x in draws) / len(draws)
    assert variance == pytest.approx(2.0, rel=0.05)


def _perturbing(min_count: int = 11) -> DisclosureProfile:
    return DisclosureProfile(
        min_count=min_count, source="test", perturbation_max_noise=3, perturbation_variance=2.0
    )


def test_averaging_repeated_answers_learns_nothing() -> None:
    # The same population has the same cell key: a hundred answers are one answer.
    ctx = CellContext(_perturbing(), Jurisdiction.DE, cell_key=1_234_567_890)
    answers = {protect_count(137, ctx).value for _ in range(100)}
    assert len(answers) == 1
    [answer] = answers
    assert answer is not None
    assert abs(answer - 137) <= 3


def test_a_perturbed_value_says_so_and_gives_its_bound_even_without_noise() -> None:
    profile = _perturbing()
    table = perturbation_table(11, 3, 2.0)
    zero_noise_key = next(k for k in range(0, CELL_KEY_MODULUS, 7919) if table.noise(50, k) == 0)
    value = protect_count(50, CellContext(profile, Jurisdiction.DE, cell_key=zero_noise_key))
    assert (value.value, value.status, value.bound) == (50, ValueStatus.PERTURBED, 3.0)
    assert [r.rule for r in value.reasons] == [CELL_KEY_PERTURBATION]


def test_without_a_cell_key_perturbation_fails_closed() -> None:
    value = perturb(Value.exact(50), CellContext(_perturbing(), Jurisdiction.DE))
    assert value.status is ValueStatus.SUPPRESSED
    assert [r.rule for r in value.reasons] == [NO_CELL_KEY]


def test_a_small_count_is_suppressed_before_any_noise() -> None:
    value = protect_count(10, CellContext(_perturbing(), Jurisdiction.DE, cell_key=99))
    assert value.value is None
    assert [r.rule for r in value.reasons] == [PRIMARY_SUPPRESSION]


# -- rounding --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("count", "expected"), [(11, 20), (14, 20), (15, 20), (24, 20), (25, 30), (1234, 1230)]
)
def test_rounding_is_deterministic_and_never_below_the_minimum(count: int, expected: int) -> None:
    profile = FR.model_copy(update={"rounding_base": 10})
    ctx = CellContext(profile, Jurisdiction.FR)
    values = {protect_count(count, ctx, (round_to_base,)).value for _ in range(5)}
    assert values == {expected}
    rounded = protect_count(count, ctx, (round_to_base,))
    assert rounded.status is ValueStatus.ROUNDED
    assert rounded.bound == 9.0  # the clamp to 20 may move 11 by 9; the same for every cell


def test_strictest_profile_composes_every_rule() -> None:
    a = FR.model_copy(update={"rounding_base": 5, "differencing_k": 20})
    b = _perturbing(5).model_copy(update={"rounding_base": 3, "dominance_n": 2, "dominance_k": 80})
    both = strictest([a, b])
    assert (both.min_count, both.rounding_base) == (11, 15)
    assert (both.perturbation_max_noise, both.perturbation_variance) == (3, 2.0)
    assert (both.differencing_floor, both.dominance_n, both.dominance_k) == (20, 2, 80)
    assert both.is_stricter_or_equal(a)
    assert both.is_stricter_or_equal(b)
    assert not a.is_stricter_or_equal(both)


# -- secondary suppression, proven by the attacker -------------------------------------------
def table_set(counts: Counts, profile: DisclosureProfile) -> TableSet:
    """A two-way table with both margins and the total, as a node computes them."""
    tables: dict[Breakdown, dict[tuple[str, ...], int]] = {(): {(): 0}, (SEX,): {}, (AGE,): {}}
    tables[(SEX, AGE)] = {key: n for key, n in counts.items() if n}
    for (sex, age), n in counts.items():
        if n:
            tables[(SEX,)][(sex,)] = tables[(SEX,)].get((sex,), 0) + n
            tables[(AGE,)][(age,)] = tables[(AGE,)].get((age,), 0) + n
            tables[()][()] += n
    return TableSet(
        {
            by: {
                key: TableCell(Value.exact(n), profile, Jurisdiction.FR) for key, n in cells.items()
            }
            for by, cells in tables.items()
        }
    )


def released(tables: TableSet) -> tuple[dict, dict]:  # type: ignore[type-arg]
    values = {by: {k: c.value for k, c in cells.items()} for by, cells in tables.tables.items()}
    thresholds = {
        by: {k: c.profile.min_count for k, c in cells.items()}
        for by, cells in tables.tables.items()
    }
    return values, thresholds


MARGIN_ATTACK: Counts = {
    ("FEMALE", "40-49"): 3,
    ("FEMALE", "50-59"): 40,
    ("FEMALE", "60-69"): 25,
    ("MALE", "40-49"): 30,
    ("MALE", "50-59"): 12,
    ("MALE", "60-69"): 50,
}


def test_without_secondary_suppression_the_margins_give_a_small_count_away() -> None:
    values, thresholds = released(protect_tables(table_set(MARGIN_ATTACK, NO_SECONDARY)))
    leaks = narrowed(values, thresholds)
    learned, _ = leaks[((SEX, AGE), ("FEMALE", "40-49"))]
    assert learned.low == learned.high == 3  # the female total minus the other ages


def test_with_secondary_suppression_the_attacker_learns_nothing() -> None:
    protected = protect_tables(table_set(MARGIN_ATTACK, FR))
    values, thresholds = released(protected)
    assert narrowed(values, thresholds) == {}
    secondary = [
        key
        for key, cell in protected.tables[(SEX, AGE)].items()
        if any(r.rule == SECONDARY_SUPPRESSION for r in cell.value.reasons)
    ]
    assert len(secondary) >= 3  # at least the other corners of a rectangle
    # Released numbers still add up to their released margins where all parts are released.
    assert protected.tables[()][()].value == Value.exact(160)


@pytest.mark.parametrize("seed", range(12))
def test_random_tables_with_small_cells_leak_nothing(seed: int) -> None:
    rng = random.Random(seed)
    ages = ["20-29", "30-39", "40-49", "50-59", "60-69", "70-79"][: rng.randint(2, 6)]
    sexes = ["FEMALE", "MALE", "UNKNOWN"][: rng.randint(2, 3)]
    counts = {
        (s, a): rng.choice([0, 1, 2, 3, 5, 8, 10, 11, 12, 15, 25, 40, 80, 200])
        for s in sexes
        for a in ages
    }
    profile = FR if seed % 2 else DisclosureProfile(min_count=5, source="test")
    protected = protect_tables(table_set(counts, profile))
    values, thresholds = released(protected)
    assert narrowed(values, thresholds) == {}, counts
    # The test is not empty: small counts were there to protect.
    assert small_counts(values) or not any(0 < n < profile.min_count for n in counts.values())


def test_zero_released_profiles_keep_zeros_and_still_protect() -> None:
    profile = FR.model_copy(update={"zero": ZeroHandling.RELEASE})
    counts = {**MARGIN_ATTACK, ("MALE", "50-59"): 0}
    protected = protect_tables(table_set(counts, profile))
    values, thresholds = released(protected)
    assert narrowed(values, thresholds) == {}


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
