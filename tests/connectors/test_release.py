"""From a stored table to what a node releases: every cell through the disclosure rules on its
own, keys in the asked order, cells sorted by key."""

from __future__ import annotations

import random

import pytest

from connectors.answers import StoredTable
from connectors.release import released_table
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
