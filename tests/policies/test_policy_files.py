"""The shipped policy files: they load, every number has a source, and the starting figures
are the ones from public rules."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from policies.compose import at_least_as_strict
from policies.loader import DEFAULT_DIRECTORY, jurisdiction_files
from policies.model import RULE_PATHS, Dominance
from policies.policy_set import PolicySet
from policies.profiles import BASELINE, MAX_RHO
from policies.purposes import PUBLIC_BODY_ONLY_BY_LAW, Purpose
from schema.codes import Dimension, Jurisdiction

J = Jurisdiction
SHIPPED = {J.FR, J.DE, J.FI, J.DK, J.NL, J.NO, J.IT, J.ES, J.BE, J.EE, J.SE}
ALL_FILES = sorted(DEFAULT_DIRECTORY.rglob("*.toml"))


def test_every_planned_jurisdiction_has_a_file(shipped: PolicySet) -> None:
    assert set(shipped.covered) == SHIPPED
    assert {path.stem for path in jurisdiction_files(DEFAULT_DIRECTORY)} == {
        j.value.lower() for j in SHIPPED
    }


@pytest.mark.parametrize(
    ("jurisdiction", "min_count", "verified"),
    [
        (J.FR, 11, True),
        (J.DK, 5, True),
        (J.NO, 3, True),
        (J.IT, 3, True),
        (J.DE, 3, False),
        (J.NL, 10, False),
        (J.FI, 10, False),
        (J.BE, 10, False),
        (J.ES, 10, False),
        (J.EE, 10, False),
        (J.SE, 10, False),
    ],
)
def test_starting_minimum_counts(
    shipped: PolicySet, jurisdiction: Jurisdiction, min_count: int, verified: bool
) -> None:
    national = shipped.layer(jurisdiction).disclosure.min_count
    assert national is not None
    assert (national.value, national.verified) == (min_count, verified)
    assert shipped.effective(jurisdiction).min_count == min_count


def test_national_specifics(shipped: PolicySet) -> None:
    assert shipped.effective(J.DE).dominance == Dominance(n=1, k=85)
    for j in SHIPPED:
        # Noise on every count and a budget per person everywhere: nobody can opt out of them.
        assert shipped.effective(j).noise.sigma >= 5
        assert shipped.effective(j).budget.applicant <= MAX_RHO


def test_profiles_come_from_the_files_and_fail_closed(shipped: PolicySet) -> None:
    expected = {J.FR: 11, J.DK: 5, J.NO: 3, J.IT: 3, J.DE: 3, J.NL: 10, J.FI: 10}
    assert {j: shipped.profile(j).min_count for j in expected} == expected
    # A jurisdiction without a policy gets the strict baseline, never a looser default.
    assert shipped.profile(J.PT) == BASELINE


def _unsourced_numbers(node: Any, path: str, sourced: bool) -> list[str]:
    if isinstance(node, dict):
        sourced = sourced or "source" in node
        return [
            found
            for key, value in node.items()
            for found in _unsourced_numbers(value, f"{path}.{key}", sourced)
        ]
    if isinstance(node, list):
        return [
            found
            for i, value in enumerate(node)
            for found in _unsourced_numbers(value, f"{path}[{i}]", sourced)
        ]
    if isinstance(node, int | float) and not isinstance(node, bool) and not sourced:
        return [path]
    return []


@pytest.mark.parametrize(
    "path", ALL_FILES, ids=lambda p: p.relative_to(DEFAULT_DIRECTORY).as_posix()
)
def test_every_number_in_every_file_has_a_source(path: Path) -> None:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert _unsourced_numbers(data, path.name, sourced=False) == []


def test_every_effective_rule_has_a_source(shipped: PolicySet) -> None:
    for j in shipped.covered:
        effective = shipped.effective(j)
        for path in RULE_PATHS:
            rule = effective.rules.rule(path)
            if rule is not None:
                assert rule.source.strip(), (j, path)
                assert effective.provenance[path], (j, path)


def test_unverified_values_are_said_to_be_so(shipped: PolicySet) -> None:
    # A value a file marks unverified must say where it comes from in words a reviewer can
    # check; for the thresholds the issue gives, the source names the uncertainty.
    for j in (J.DE, J.NL, J.FI, J.BE, J.ES, J.EE, J.SE):
        rule = shipped.layer(j).disclosure.min_count
        assert rule is not None
        assert not rule.verified
        assert "unverified" in rule.source or "to be confirmed" in rule.source


def test_the_baseline_carries_the_law(shipped: PolicySet) -> None:
    baseline = shipped.baseline
    assert baseline.purposes.allowed is not None
    assert baseline.purposes.allowed.value == frozenset(Purpose)
    assert baseline.purposes.public_body_only is not None
    assert baseline.purposes.public_body_only.value >= PUBLIC_BODY_ONLY_BY_LAW
    assert baseline.optout.required is not None
    assert baseline.optout.required.value
    assert baseline.dimensions.allowed is not None
    assert baseline.dimensions.allowed.value == frozenset(Dimension)


def test_every_jurisdiction_is_at_least_as_strict_as_the_baseline(shipped: PolicySet) -> None:
    for j in shipped.covered:
        assert at_least_as_strict(shipped.effective(j).rules, shipped.baseline)


def test_every_jurisdiction_names_its_hdab(shipped: PolicySet) -> None:
    for j in shipped.covered:
        hdab = shipped.layer(j).hdab
        assert hdab.name.strip()
        assert hdab.source.strip()
        assert hdab.url is None or hdab.url.startswith("https://")


def test_the_demo_questions_are_allowed_by_the_shipped_rules(shipped: PolicySet) -> None:
    # `make demo` asks FR, DE, FI and DK for breakdowns by JURISDICTION, SEX, AGE_BAND_10/20.
    for j in (J.FR, J.DE, J.FI, J.DK):
        effective = shipped.effective(j)
        assert {Dimension.JURISDICTION, Dimension.SEX, Dimension.AGE_BAND_10} <= (
            effective.allowed_dimensions
        )
        assert effective.min_age_band_width <= 10
        assert Purpose.SCIENTIFIC_RESEARCH in effective.allowed_purposes


def test_no_shipped_file_holds_an_absolute_path() -> None:
    for path in ALL_FILES:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for issuer in data.get("issuers", []):
            assert not str(issuer.get("jwks_file", "")).startswith("/")


# The dimensions each shipped jurisdiction allows, as its effective policy says: a change to
# how the files state them (the baseline's list, a national restriction) must leave these as
# they are. Written out, not computed from the files, so that a file change cannot move both.
ALLOWED_DIMENSIONS: dict[Jurisdiction, frozenset[Dimension]] = {
    j: frozenset(
        {
            Dimension.JURISDICTION,
            Dimension.SEX,
            Dimension.AGE_BAND_5,
            Dimension.AGE_BAND_10,
            Dimension.AGE_BAND_20,
            Dimension.CALENDAR_YEAR,
            Dimension.VALUE_BIN,
            Dimension.FOLLOW_UP,
        }
    )
    for j in SHIPPED
}


@pytest.mark.parametrize("jurisdiction", sorted(SHIPPED))
def test_the_effective_allowed_dimensions_are_the_shipped_ones(
    shipped: PolicySet, jurisdiction: Jurisdiction
) -> None:
    assert shipped.effective(jurisdiction).allowed_dimensions == ALLOWED_DIMENSIONS[jurisdiction]
