"""From a stored table to what a node releases: every cell through the disclosure rules on its
own, keys in the asked order, cells sorted by key."""

from __future__ import annotations

import random

import pytest

from connectors.answers import StoredTable
from connectors.release import ReleasedValues, released_table
from policies.disclosure import NODE_RULES, CellContext, protect, release
from policies.loader import load_policy_set
from schema.codes import Dimension, Jurisdiction, MeasureKind

SEX, AGE = Dimension.SEX, Dimension.AGE_BAND_10

COUNT = MeasureKind.PERSON_COUNT


@pytest.mark.parametrize("rounding_base", [1, 5])
def test_every_cell_is_released_as_the_rules_release_it_alone(rounding_base: int) -> None:
    profile = load_policy_set().profile(Jurisdiction.DE)
    profile = profile.model_copy(update={"rounding_base": rounding_base})
    context = CellContext(profile, Jurisdiction.DE)
    rng = random.Random(7)
    # Stored in the canonical order (SEX before AGE_BAND_10); asked the other way round.
    stored = StoredTable(
        {
            (sex, f"{band}-{band + 9}"): rng.randint(-15, 40)
            for sex in ("FEMALE", "MALE", "UNKNOWN")
            for band in range(0, 130, 10)
        }
    )
    table = released_table((AGE, SEX), {COUNT: stored}, 5.0, context)
    assert table.by == (AGE, SEX)
    keys = [tuple(cell.key) for cell in table.cells]
    assert keys == sorted((age, sex) for sex, age in stored.cells)
    for cell in table.cells:
        age, sex = cell.key
        alone = protect(release(stored.cells[(sex, age)], 5.0, context), context, NODE_RULES)
        assert cell.values == {COUNT: alone}
    assert table == released_table((AGE, SEX), {COUNT: stored}, 5.0, context)


def test_values_shared_across_tables_and_contexts_are_each_contexts_own() -> None:
    de = load_policy_set().profile(Jurisdiction.DE)
    rounded = CellContext(de.model_copy(update={"rounding_base": 5}), Jurisdiction.DE)
    plain = CellContext(de.model_copy(update={"rounding_base": 1}), Jurisdiction.DE)
    stored = StoredTable({(sex,): n for sex, n in (("FEMALE", 12), ("MALE", 3), ("UNKNOWN", 12))})
    shared = ReleasedValues(per_kind=2)
    for sd in (5.0, 10.0, 5.0):
        for context in (rounded, plain, rounded):
            # Made once per measure, sd, context and noisy value, and kept only up to
            # `per_kind` of them: a table made with the shared values is the one made alone.
            assert released_table((SEX,), {COUNT: stored}, sd, context, shared) == (
                released_table((SEX,), {COUNT: stored}, sd, context)
            )
    twelve = released_table((SEX,), {COUNT: stored}, 5.0, plain, shared).cells
    assert twelve[0].values[COUNT] is twelve[2].values[COUNT]  # one value, shared
