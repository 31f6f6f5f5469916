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
from collections.abc import Callable, Sequence
from typing import Any, Protocol

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
