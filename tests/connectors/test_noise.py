"""The production noise: OpenDP's discrete Gaussian, drawn ahead into a reserve that each draw
takes from once, refilled once half of it is spent, and sampled on the spot for what the
reserve lacks."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import pytest

from connectors.noise import DiscreteGaussian


class Later(Executor):
    """Runs the submitted refills when told to, so that a test sees the reserve between."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.jobs.append((fn, args))
        return Future()

    def run(self) -> None:
        jobs, self.jobs = self.jobs, []
        for fn, args in jobs:
            fn(*args)


def test_each_count_gets_integer_noise_of_the_sd_asked() -> None:
    noise = DiscreteGaussian()
    for sd in (5.0, 10.0):
        drawn = noise.draw([1000] * 20_000, sd)
        assert all(isinstance(n, int) for n in drawn)
        errors = [n - 1000 for n in drawn]
        # 20,000 samples: the mean's sd is sd / 141, the sd's about sd / 200.
        assert abs(statistics.fmean(errors)) < sd / 141 * 5
        assert abs(statistics.pstdev(errors) - sd) < sd * 0.05


def test_noise_comes_from_the_reserve_each_sample_once_and_is_refilled_between() -> None:
    refills = Later()
    noise = DiscreteGaussian(reserve=100, refills=refills)
    # Nothing in reserve yet: the first draw samples its own noise and starts a refill.
    assert len(noise.draw([5] * 10, 5.0)) == 10
    assert (noise.ready(5.0), len(refills.jobs)) == (0, 1)
    refills.run()
    assert noise.ready(5.0) == 100
    noise.draw([5] * 30, 5.0)
    noise.draw([5] * 20, 5.0)
    # Taken once, and refilled only below half the reserve.
    assert (noise.ready(5.0), len(refills.jobs)) == (50, 0)
    noise.draw([5] * 5, 5.0)
    noise.draw([5] * 5, 5.0)
    # One refill at a time.
    assert (noise.ready(5.0), len(refills.jobs)) == (40, 1)
    refills.run()
    assert noise.ready(5.0) == 100
    # More than the reserve holds: all of it, and the rest sampled on the spot.
    assert len(noise.draw([5] * 150, 5.0)) == 150
    assert noise.ready(5.0) == 0
    # Each sd has a reserve of its own.
    assert noise.ready(10.0) == 0


def test_without_a_reserve_every_draw_samples_its_own_noise() -> None:
    refills = Later()
    noise = DiscreteGaussian(reserve=0, refills=refills)
    assert len(noise.draw([0, 1, 2], 5.0)) == 3
    assert noise.draw([], 5.0) == []
    assert refills.jobs == []


def test_the_cost_is_opendps_privacy_map_for_each_sd() -> None:
    noise = DiscreteGaussian()
    for sd in (5.0, 10.0, 5.0):
        # zCDP of the discrete Gaussian at an L2 sensitivity of one: 1 / (2 sd^2).
        assert noise.rho(sd) == pytest.approx(1 / (2 * sd * sd))
