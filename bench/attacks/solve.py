"""The attacker of tables and margins: every released number is a sum of unknown finest cells
(non-negative integers), and the attacker solves for the small ones.

Two kinds of knowledge, two solvers:

- hard constraints (an exact count; a count within ±bound; what a status implies: a cell not
  listed holds nobody, a count suppressed as small lies in [1, minimum - 1], one suppressed to
  protect another is at least the minimum): integer programming (scipy's MILP, HiGHS) gives
  the smallest and largest value of each target consistent with all of them (as in
  tests/attacker.py, here over many questions at once);
- noisy counts with a stated sd: generalised least squares over everything released; the
  standard error of a target follows from the design, and a target no combination of
  releases isolates has none.

The attacker keeps whichever of the two readings is tighter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, milp

from bench.attacks.estimate import Reading, uniform

Row = NDArray[np.float64]

# A stated variance this small is an exact count in the least-squares solve.
_EXACT_SD = 1e-3


@dataclass
class LinearAttack:
    size: int
    _hard: list[tuple[Row, float, float]] = field(default_factory=list)
    _noisy: list[tuple[Row, float, float]] = field(default_factory=list)

    def between(self, row: Row, low: float, high: float) -> None:
        self._hard.append((row, low, high))

    def noisy(self, row: Row, value: float, sd: float) -> None:
        self._noisy.append((row, value, sd))

    # -- integer programming ----------------------------------------------------------------
    def interval(self, target: Row) -> tuple[float, float] | None:
        """The least and greatest value of `target` the hard constraints allow; None when
        they contradict each other (the attacker misread something)."""
        if not self._hard:
            return (0.0, math.inf)
        constraints = LinearConstraint(
            np.array([r for r, _, _ in self._hard]),
            np.array([lo for _, lo, _ in self._hard]),
            np.array([hi for _, _, hi in self._hard]),
        )
        ends = []
        for sign in (1.0, -1.0):
            result = milp(
                sign * target,
                constraints=constraints,
                integrality=np.ones(self.size),
                bounds=Bounds(0, np.inf),
            )
            if result.status == 2:
                return None
            if result.status == 3 or result.x is None:  # unbounded
                ends.append(math.inf if sign < 0 else 0.0)
                continue
            ends.append(sign * float(result.fun))
        return ends[0], ends[1]

    # -- least squares ------------------------------------------------------------------------
    def least_squares(self, targets: list[Row]) -> list[Reading | None]:
        if not self._noisy:
            return [None] * len(targets)
        rows = [
            *self._noisy,
            *((r, (lo + hi) / 2, _EXACT_SD) for r, lo, hi in self._hard if lo == hi),
        ]
        design = np.array([r / sd for r, _, sd in rows])
        observed = np.array([v / sd for _, v, sd in rows])
        pinv = np.linalg.pinv(design)
        solution = pinv @ observed
        covariance = pinv @ pinv.T
        readings: list[Reading | None] = []
        for target in targets:
            # Identifiable only if the target is a combination of the released sums.
            weights = target @ pinv
            if np.linalg.norm(weights @ design - target) > 1e-6 * max(
                1.0, float(np.linalg.norm(target))
            ):
                readings.append(None)
                continue
            readings.append(Reading(float(target @ solution), float(target @ covariance @ target)))
        return readings

    def read(self, targets: list[Row]) -> list[Reading | None]:
        """The tighter of the two readings of each target."""
        squares = self.least_squares(targets)
        readings: list[Reading | None] = []
        for target, square in zip(targets, squares, strict=True):
            best = square
            found = self.interval(target)
            if found is not None and math.isfinite(found[1]):
                low, high = math.ceil(found[0] - 1e-6), math.floor(found[1] + 1e-6)
                bounded = uniform(low, max(low, high))
                if best is None or bounded.variance < best.variance:
                    best = bounded
            readings.append(best)
        return readings
