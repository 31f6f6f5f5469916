"""Vectorised building blocks: day arithmetic and random draws over whole populations.

Dates are whole days since 1970-01-01 (int64) so that date arithmetic stays in numpy; the
database writer turns them into DATEs. `MISSING` stands for SQL NULL in integer columns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Final

import numpy as np
from numpy.typing import NDArray

Days = NDArray[np.int64]
Ints = NDArray[np.int64]
Floats = NDArray[np.float64]
Mask = NDArray[np.bool_]
Index = NDArray[np.intp]
Column = NDArray[np.int64] | NDArray[np.float64]

DAYS_PER_YEAR: Final = 365.2425
MISSING: Final = -(2**31)  # NULL in integer and date columns; no real value comes near it

_EPOCH: Final = dt.date(1970, 1, 1)


def day(value: dt.date | str) -> int:
    """Days since 1970-01-01 of a date or an ISO date string."""
    date = dt.date.fromisoformat(value) if isinstance(value, str) else value
    return (date - _EPOCH).days


def years(values: Floats | float) -> Days:
    return np.floor(np.asarray(values, dtype=np.float64) * DAYS_PER_YEAR).astype(np.int64)


def uniform_days(rng: np.random.Generator, low: Days | int, high: Days | int, n: int) -> Days:
    """A uniform day in [low, high] for each of n rows; rows with high < low get low."""
    lo = np.broadcast_to(np.asarray(low, dtype=np.int64), (n,))
    span = np.maximum(np.asarray(high, dtype=np.int64) - lo + 1, 1)
    offset: Days = np.floor(rng.random(n) * span).astype(np.int64)
    return lo + offset


def chance(rng: np.random.Generator, p: Floats | float, n: int) -> Mask:
    """One Bernoulli draw per row; p may be a scalar or one probability per row."""
    drawn: Mask = rng.random(n) < p
    return drawn


def categorical(rng: np.random.Generator, weights: Sequence[float], n: int) -> Index:
    """Category index per row, drawn with the given (unnormalised) weights."""
    w = np.asarray(weights, dtype=np.float64)
    cumulative = np.cumsum(w / w.sum())
    picked: Index = np.searchsorted(cumulative, rng.random(n), side="right")
    return np.minimum(picked, len(w) - 1)


def curve(x: Floats, points: Sequence[tuple[float, float]]) -> Floats:
    """Piecewise-linear function through (x, y) points, flat beyond the ends: how risks are
    given as a function of age."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    result: Floats = np.interp(x, xs, ys)
    return result


def repeat_rows(counts: Ints) -> tuple[Index, Ints]:
    """For rows repeated `counts` times: the source row of each copy and the copy's rank
    (0 for the first copy of every row)."""
    source: Index = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    rank: Ints = np.arange(len(source), dtype=np.int64) - np.repeat(starts, counts)
    return source, rank


def pick(values: Sequence[int], index: Index) -> Ints:
    """values[index] as an int64 array: turns category draws into concept ids."""
    looked_up: Ints = np.asarray(values, dtype=np.int64)[index]
    return looked_up
