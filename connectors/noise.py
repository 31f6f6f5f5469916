"""Noise for released counts: integer (discrete Gaussian) noise, behind a small protocol.

Floating-point noise breaks differential privacy (Mironov 2012: the low bits of a float
sample give the value away), so noise is sampled exactly over the integers by OpenDP's
discrete Gaussian sampler (Canonne, Kamath & Steinke 2020), whose own privacy map gives the
cost of a release: a table whose persons are each counted once (an L2 sensitivity of one)
costs rho = 1/(2 sd^2) in zero-concentrated differential privacy.

OpenDP's samplers take their randomness from the operating system and cannot be seeded: the
draws are stored (`connectors.answers`) and never drawn again for the same question.
`ShiftedNoise` is the fake for tests: deterministic, and obviously not private.

Exact sampling costs ~20 µs a cell, so a table of a few thousand cells would wait ~0.1 s for
its noise. `DiscreteGaussian` therefore draws ahead: for each sd asked so far it keeps a
reserve of OpenDP's samples, refilled on a worker thread once half of it is spent, and each draw
takes its noise from the reserve (the part the reserve lacks, it samples itself). Noise does
not depend on the counts it is added to, so drawing it before the question changes nothing
but when the sampler runs; every sample is used once, and stays in memory only.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Final, Protocol

import opendp.prelude as dp

dp.enable_features("contrib")

log = logging.getLogger(__name__)

# Samples kept ready per sd: a few tables of the largest size a policy allows (10,000 cells).
RESERVE: Final = 16_384
# Samples drawn per call of the sampler while refilling: other threads (the event loop) are
# never kept from the GIL for long, and the refill stops soon after it is no longer needed.
_CHUNK: Final = 1024
# One thread refills every reserve: the sampler runs in Rust, without the GIL.
_REFILLS: Final = ThreadPoolExecutor(max_workers=1, thread_name_prefix="noise")


class NoiseSource(Protocol):
    def draw(self, counts: Sequence[int], sd: float) -> list[int]:
        """`counts`, each with independent noise of standard deviation `sd` added."""
        ...

    def rho(self, sd: float, sensitivity: int = 1) -> float:
        """What releasing one table with noise `sd` costs each person counted in it, when one
        person moves the table's values by at most `sensitivity` (L2, a whole number)."""
        ...


# OpenDP samples a Python `int` domain as i32, saturating at 2^31: beyond an sd of 2^31/64
# (a regression's sums in fine units: `schema.regression`) the samples are drawn as i64, where
# no sample reaches the bound (64 sds away happens about never). The privacy map is the same.
_I32_SD_LIMIT: Final = 2.0**31 / 64


@functools.lru_cache(maxsize=64)
def _mechanism(sd: float) -> Any:
    integer = "i32" if sd < _I32_SD_LIMIT else "i64"
    return dp.m.make_gaussian(
        dp.vector_domain(dp.atom_domain(T=integer)), dp.l2_distance(T=integer), scale=float(sd)
    )


def _sample(sd: float, n: int) -> list[int]:
    """`n` independent samples of the discrete Gaussian of standard deviation `sd`: the
    mechanism's output for a vector of zeros."""
    noise: list[int] = _mechanism(sd)([0] * n)
    return noise


class DiscreteGaussian:
    """The production source: OpenDP's exact discrete Gaussian sampler, drawn ahead into a
    reserve of `reserve` samples per sd (0: every draw samples its own noise) by `refills`."""

    def __init__(self, *, reserve: int = RESERVE, refills: Executor = _REFILLS) -> None:
        self._reserve = reserve
        self._refills = refills
        self._lock = threading.Lock()
        self._reserves: dict[float, list[int]] = {}
        self._refilling: set[float] = set()

    def draw(self, counts: Sequence[int], sd: float) -> list[int]:
        if not counts:
            return []
        n = len(counts)
        with self._lock:
            ready = self._reserves.setdefault(sd, [])
            noise = ready[-n:]
            del ready[-n:]
            self._refill(sd)
        if len(noise) < n:
            noise += _sample(sd, n - len(noise))
        return [int(c) + z for c, z in zip(counts, noise, strict=True)]

    def ready(self, sd: float) -> int:
        """How many samples of sd `sd` are in reserve now."""
        with self._lock:
            return len(self._reserves.get(sd, ()))

    def _refill(self, sd: float) -> None:
        """Start refilling the reserve of `sd` once it is down to half, unless it is being
        refilled (called with the lock held). Not after every draw: the sampler's thread
        takes the GIL in turns to convert its samples (~5 ms for a 370-cell table's), beside
        the question that drew them, whose store and release it would hold back; half a
        reserve refilled at once keeps it from all but one question in many."""
        if sd in self._refilling or len(self._reserves[sd]) >= self._reserve // 2:
            return
        self._refilling.add(sd)
        self._refills.submit(self._fill, sd)

    def _fill(self, sd: float) -> None:
        try:
            while True:
                with self._lock:
                    missing = self._reserve - len(self._reserves[sd])
                if missing <= 0:
                    return
                drawn = _sample(sd, min(missing, _CHUNK))
                with self._lock:
                    self._reserves[sd] += drawn
        except Exception as exc:  # draws then sample their own noise, and fail if it fails
            log.warning("refilling the noise reserve failed: %s", type(exc).__name__)
        finally:
            with self._lock:
                self._refilling.discard(sd)

    def rho(self, sd: float, sensitivity: int = 1) -> float:
        return _rho(sd, sensitivity)


@functools.lru_cache(maxsize=256)
def _rho(sd: float, sensitivity: int = 1) -> float:
    """OpenDP's privacy map of the mechanism, asked once per sd and sensitivity: each call
    crosses into OpenDP (~0.3 ms), and every question asks it. Sums of clipped values are
    released in whole units (`schema.variables`), so their sensitivity is a whole number and
    the integer mechanism's own map applies: ρ = sensitivity² / (2 sd²)."""
    cost: float = _mechanism(sd).map(int(sensitivity))
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

    def rho(self, sd: float, sensitivity: int = 1) -> float:
        return float(sensitivity * sensitivity) / (2.0 * sd * sd)


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
