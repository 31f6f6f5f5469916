"""The attacker of the disclosure tests: integer programming over everything released.

Independent of policies.secondary (which checks with linear programming over margin
relations): the attacker's unknowns are the finest cells — one per combination of every
dimension's values — and every released number is a sum of them. Each released exact count
fixes its sum, a perturbed or rounded one bounds it by its `bound`, and each status says what
it says: a count suppressed for being small lies in [1, t-1], a secondary-suppressed one is at
least t. For every suppressed count the attacker computes, with scipy's MILP (HiGHS), the
smallest and largest value consistent with all of that.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from policies.tables import PRIMARY_SUPPRESSION, SECONDARY_SUPPRESSION, CellKey
from schema.codes import Dimension, ValueStatus
from schema.query import Breakdown
from schema.result import Value

Released = Mapping[Breakdown, Mapping[CellKey, Value]]


@dataclass(frozen=True)
class Learned:
    """What the attacker learned about one suppressed count."""

    low: float
    high: float

    @property
    def width(self) -> float:
        return self.high - self.low


def attack(
    released: Released,
    thresholds: Mapping[Breakdown, Mapping[CellKey, int]],
    *,
    prior_only: bool = False,
) -> dict[tuple[Breakdown, CellKey], Learned]:
    """The interval of every suppressed count. `thresholds` gives each cell's minimum count
    (what its status implies). With `prior_only`, released values are ignored: the intervals
    the statuses alone allow (what the tables must not narrow)."""
    dimensions = sorted({d for by in released for d in by}, key=list(Dimension).index)
    values: dict[Dimension, list[str]] = {
        d: sorted({key[by.index(d)] for by, cells in released.items() if d in by for key in cells})
        for d in dimensions
    }
    fine = list(itertools.product(*(values[d] for d in dimensions)))
    index = {cell: i for i, cell in enumerate(fine)}

    def members(by: Breakdown, key: CellKey) -> list[int]:
        want = dict(zip(by, key, strict=True))
        return [
            index[cell]
            for cell in fine
            if all(cell[dimensions.index(d)] == v for d, v in want.items())
        ]

    rows: list[np.ndarray] = []
    lows: list[float] = []
    highs: list[float] = []
    targets: dict[tuple[Breakdown, CellKey], np.ndarray] = {}
    for by, cells in released.items():
        listed = set(cells)
        for key in itertools.product(*(values[d] for d in by)):
            row = np.zeros(len(fine))
            row[members(by, key)] = 1.0
            if key not in listed:
                # Not listed: an empty group.
                rows.append(row)
                lows.append(0.0)
                highs.append(0.0)
                continue
            value = cells[key]
            t = thresholds[by][key]
            floor = 0.0 if not by else 1.0
            if value.status is ValueStatus.SUPPRESSED:
                rules = {r.rule for r in value.reasons}
                slack = value.bound or 0.0
                if PRIMARY_SUPPRESSION in rules:
                    low, high = floor, t - 1 + slack
                elif SECONDARY_SUPPRESSION in rules:
                    low, high = float(t), math.inf
                else:
                    low, high = floor, math.inf
                targets[(by, key)] = row
            elif prior_only:
                low, high = floor, math.inf
            else:
                assert value.value is not None
                bound = value.bound or 0.0
                low, high = max(floor, value.value - bound), value.value + bound
            rows.append(row)
            lows.append(low)
            highs.append(high)
    constraints = LinearConstraint(np.array(rows), np.array(lows), np.array(highs))
    learned = {}
    integrality = np.ones(len(fine))
    for cell, row in targets.items():
        ends = []
        for sign in (1.0, -1.0):
            result = milp(
                sign * row,
                constraints=constraints,
                integrality=integrality,
                bounds=Bounds(0, np.inf),
            )
            if result.status == 3 or (result.status != 0 and sign < 0):
                ends.append(math.inf)
                continue
            assert result.status == 0, (cell, result.message)
            ends.append(sign * float(result.fun))
        learned[cell] = Learned(ends[0], ends[1])
    return learned


def narrowed(
    released: Released, thresholds: Mapping[Breakdown, Mapping[CellKey, int]]
) -> dict[tuple[Breakdown, CellKey], tuple[Learned, Learned]]:
    """The small (primary-suppressed) counts the released values narrow beyond what the
    statuses alone say: (with the values, statuses only). Empty: nothing leaks."""
    found = attack(released, thresholds)
    reference = attack(released, thresholds, prior_only=True)
    leaks = {}
    for cell, learned in found.items():
        value = released[cell[0]][cell[1]]
        if not any(r.rule == PRIMARY_SUPPRESSION for r in value.reasons):
            continue
        ref = reference[cell]
        if learned.low > ref.low + 1e-6 or learned.high < ref.high - 1e-6:
            leaks[cell] = (learned, ref)
    return leaks


def small_counts(released: Released) -> Sequence[tuple[Breakdown, CellKey]]:
    return [
        (by, key)
        for by, cells in released.items()
        for key, value in cells.items()
        if any(r.rule == PRIMARY_SUPPRESSION for r in value.reasons)
    ]
