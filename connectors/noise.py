"""Noise for released counts: integer (discrete Gaussian) noise, behind a small protocol.

Floating-point noise breaks differential privacy (Mironov 2012: the low bits of a float
sample give the value away), so noise is sampled exactly over the integers by OpenDP's
discrete Gaussian sampler (Canonne, Kamath & Steinke 2020), whose own privacy map gives the
cost of a release: a table whose persons are each counted once (an L2 sensitivity of one)
costs rho = 1/(2 sd^2) in zero-concentrated differential privacy.

OpenDP's samplers take their randomness from the operating system and cannot be seeded: the
draws are stored (`connectors.answers`) and never drawn again for the same question.
`ShiftedNoise` is the fake for tests: deterministic, and obviously not private.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

import opendp.prelude as dp

dp.enable_features("contrib")


class NoiseSource(Protocol):
    def draw(self, counts: Sequence[int], sd: float) -> list[int]:
        """`counts`, each with independent noise of standard deviation `sd` added."""
        ...

    def rho(self, sd: float) -> float:
        """What releasing one table with noise `sd` costs each person counted in it."""
        ...


@functools.lru_cache(maxsize=64)
def _mechanism(sd: float) -> Any:
    return dp.m.make_gaussian(
        dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=int), scale=float(sd)
    )


class DiscreteGaussian:
    """The production source: OpenDP's exact discrete Gaussian sampler."""

    def draw(self, counts: Sequence[int], sd: float) -> list[int]:
        if not counts:
            return []
        noisy: list[int] = _mechanism(sd)([int(c) for c in counts])
        return noisy

    def rho(self, sd: float) -> float:
        cost: float = _mechanism(sd).map(1)
        return cost


class ShiftedNoise:
    """For tests: adds `shift(i)` to the i-th count of every draw (0 by default), and states
    the discrete Gaussian's cost."""

    def __init__(self, shift: Callable[[int], int] = lambda i: 0) -> None:
        self._shift = shift
        self.draws = 0

    def draw(self, counts: Sequence[int], sd: float) -> list[int]:
        self.draws += 1
        return [int(c) + self._shift(i) for i, c in enumerate(counts)]

    def rho(self, sd: float) -> float:
        return 1.0 / (2.0 * sd * sd)


# The smallest share sd a pooled round may ask for: the bound below needs shares of at least
# 1/2 (and at sd 1 or more its correction term is already negligible).
MIN_SHARE_SD: Final = 0.5


def share_sd(sd: float, shares: int) -> float:
    """The sd of each of `shares` noise shares whose sum has sd `sd`."""
    return sd / math.sqrt(shares)


def pooled_rho(sd: float, shares: int, cells: int) -> float:
    """What a table pooled from `shares` independent discrete Gaussian shares, each of sd
    `share_sd(sd, shares)`, costs each person counted in it, in zCDP.

    A sum of discrete Gaussians is close to, not exactly, a discrete Gaussian. Kairouz, Liu &
    Steinke (2021, "The distributed discrete Gaussian mechanism for federated learning with
    secure aggregation", ICML) bound the sum of n shares of scale s over d cells, for a
    sensitivity of 1 in both norms, by ½ε²-zCDP with
    ε² = min(1/(n s²) + τd/2, (1/(√n s) + τ√d)²), τ = 10 Σ_{k=1}^{n-1} exp(-2π² s² k/(k+1)).
    With n s² = sd² the first term is the single discrete Gaussian's 1/sd²; τ is charged on
    top (at shares of sd 2 or more, below 10^-15 per cell)."""
    if shares < 1 or cells < 1:
        raise ValueError("a pooled table has at least one share and one cell")
    s2 = sd * sd / shares
    tau = 10.0 * sum(math.exp(-2.0 * math.pi**2 * s2 * k / (k + 1)) for k in range(1, shares))
    epsilon2 = min(1.0 / (sd * sd) + tau * cells / 2.0, (1.0 / sd + tau * math.sqrt(cells)) ** 2)
    return epsilon2 / 2.0
