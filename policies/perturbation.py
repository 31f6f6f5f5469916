"""Consistent perturbation by the cell-key method (as used by the Australian Bureau of
Statistics, the UK's ONS and Germany's 2022 census).

Every person has a secret, stable record key at their node, uniform in [0, M) with
M = 2^31 (`tessera connector prepare` draws them; they never leave the node). A cell's key is
the sum of its persons' record keys modulo M: uniform again, and a function of the cell's
population only. The noise added to a count n is looked up in a perturbation table from
(n, cell key), so

- the same population always gets the same released value: across restarts, repeated
  queries and differently worded but equivalent queries (averaging learns nothing), and
- different populations get independent noise.

The perturbation table, for a profile's minimum count t, maximum noise D and variance V, has
one row per true count n >= t (rows for n >= t + D are identical). Row n is a distribution
over the noise d in [max(-D, t - n), D] with

- zero mean (the released value is unbiased),
- |d| <= D (bounded: `Value.bound` is D),
- n + d >= t: no released value is ever below the minimum count ("no small values"), and
- the largest entropy among such distributions with variance V (Giessing 2016, as in the
  sdcTools `ptable` package); rows near t, where the lower limit cuts the noise, have the
  largest variance they can have up to V.

`PerturbationTable.describe()` prints the table; the policy files configure D and V per
jurisdiction (`disclosure.perturbation`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Final

import numpy as np

CELL_KEY_MODULUS: Final = 2**31
# A row whose lower noise limit is L < 0 and upper limit D can have a variance of at most
# -L * D (all mass on the two ends); we ask for at most this share of it, which keeps every
# noise value of the row possible.
_VARIANCE_SHARE: Final = 0.9


@dataclass(frozen=True, slots=True)
class PerturbationRow:
    """The noise distribution for one true count (`count`, or every count from it on when it
    is the table's last row)."""

    count: int
    noise: tuple[int, ...]
    probabilities: tuple[float, ...]
    # Upper ends of each noise value's interval of [0, 1): the cell key picks the interval.
    cumulative: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.dot(self.noise, self.probabilities))

    @property
    def variance(self) -> float:
        return float(np.dot(np.square(self.noise), self.probabilities)) - self.mean**2

    def pick(self, cell_key: int) -> int:
        u = (cell_key % CELL_KEY_MODULUS) / CELL_KEY_MODULUS
        for noise, upper in zip(self.noise, self.cumulative, strict=True):
            if u < upper:
                return noise
        return self.noise[-1]


@dataclass(frozen=True, slots=True)
class PerturbationTable:
    min_count: int
    max_noise: int
    variance: float
    rows: tuple[PerturbationRow, ...]

    def row(self, count: int) -> PerturbationRow:
        if count < self.min_count:
            raise ValueError("counts below the minimum are suppressed, never perturbed")
        return self.rows[min(count - self.min_count, len(self.rows) - 1)]

    def noise(self, count: int, cell_key: int) -> int:
        return self.row(count).pick(cell_key)

    def describe(self) -> str:
        lines = [
            f"cell-key perturbation table: minimum count {self.min_count}, "
            f"noise at most ±{self.max_noise}, variance at most {self.variance:g}",
            "count   " + " ".join(f"{d:>7d}" for d in range(-self.max_noise, self.max_noise + 1)),
        ]
        for row in self.rows:
            by_noise = dict(zip(row.noise, row.probabilities, strict=True))
            label = f"{row.count}+" if row is self.rows[-1] else str(row.count)
            cells = " ".join(
                f"{by_noise[d]:7.4f}" if d in by_noise else "      ·"
                for d in range(-self.max_noise, self.max_noise + 1)
            )
            lines.append(f"{label:<7} {cells}   (variance {row.variance:.3f})")
        return "\n".join(lines)


@cache
def perturbation_table(min_count: int, max_noise: int, variance: float) -> PerturbationTable:
    """The documented table for these parameters (cached: it depends on nothing else)."""
    if max_noise < 1 or variance <= 0:
        raise ValueError("a perturbation table needs max_noise >= 1 and variance > 0")
    rows = tuple(
        _row(min_count + i, lower=max(-max_noise, -i), upper=max_noise, variance=variance)
        for i in range(max_noise + 1)
    )
    return PerturbationTable(min_count, max_noise, variance, rows)


def _row(count: int, *, lower: int, upper: int, variance: float) -> PerturbationRow:
    if lower == 0:
        # Zero mean with no negative noise allowed: the count is released as it is.
        return PerturbationRow(count, (0,), (1.0,), (1.0,))
    target = min(variance, _VARIANCE_SHARE * -lower * upper)
    support = np.arange(lower, upper + 1, dtype=float)
    probabilities = _max_entropy(support, target)
    cumulative = np.cumsum(probabilities)
    cumulative[-1] = 1.0
    return PerturbationRow(
        count,
        tuple(int(d) for d in support),
        tuple(float(p) for p in probabilities),
        tuple(float(c) for c in cumulative),
    )


def _max_entropy(support: np.ndarray, variance: float) -> np.ndarray:
    """p(d) ∝ exp(a·d + b·d²) with mean 0 and the given variance: Newton's method on the
    (convex) dual, log Σ exp(a·d + b·d²) − b·variance."""
    features = np.stack([support, support**2 - variance])
    theta = np.zeros(2)
    for _ in range(200):
        logits = theta @ features
        weights = np.exp(logits - logits.max())
        p = weights / weights.sum()
        gradient = features @ p
        if np.abs(gradient).max() < 1e-13:
            break
        centred = features - gradient[:, None]
        hessian = (centred * p) @ centred.T + 1e-12 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        objective = _dual(theta, features)
        scale = 1.0
        while _dual(theta - scale * step, features) > objective and scale > 1e-8:
            scale /= 2
        theta = theta - scale * step
    logits = theta @ features
    weights = np.exp(logits - logits.max())
    p = weights / weights.sum()
    if not math.isclose(float(support @ p), 0.0, abs_tol=1e-9):
        raise ArithmeticError("perturbation row did not converge to zero mean")
    return np.asarray(p, dtype=float)


def _dual(theta: np.ndarray, features: np.ndarray) -> float:
    logits = theta @ features
    top = float(logits.max())
    return top + math.log(float(np.exp(logits - top).sum()))
