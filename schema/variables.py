"""The numeric variables a question may summarise, and the public arithmetic of their values.

A question names one numeric variable (`schema.query.NumericVariable`: a person's age at the
question's age date, or a measurement's value per person); each node releases per cell only
its sufficient statistics (`schema.codes.MeasureKind`: VALUE_N, VALUE_SUM,
VALUE_SUM_SQUARES), over values clipped to public bounds and counted in whole units of the
variable's resolution. The bounds come from this registry, or from the question within the
registry's limits: never from the data, so that clipping fixes how much one person can move a
sum (its sensitivity), and with it the noise and the cost.

Units. A value x (in the variable's unit) becomes u = clip(⌊x / resolution + ½⌋, lo, hi) − c,
with lo and hi the bounds in units and c their midpoint (rounded down): |u| ≤ Δ₁ =
(hi − lo) − ⌊(hi − lo)/2⌋. A node releases Σu (sensitivity Δ₁) and Σ(u² − k) with
k = ⌊Δ₁²/2⌋ (u² lies in [0, Δ₁²], so u² − k moves a sum by at most Δ₂ = Δ₁² − k): centring
halves each sum's sensitivity, and its noise, against sums of raw units. Whole units keep
the sums integers, so the exact integer samplers and their privacy maps apply as they do to
counts (`connectors.noise`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class VariableSource(StrEnum):
    """Where a numeric variable's value comes from."""

    AGE = "AGE"  # whole years at the question's age date (`CohortQuery.age_basis`)
    MEASUREMENT = "MEASUREMENT"  # a LOINC measurement's value, one per person


class PerPerson(StrEnum):
    """Which of a person's measurements in the window is their value."""

    FIRST = "FIRST"
    LAST = "LAST"
    MEAN = "MEAN"


# The largest bin edge a node may send, in units of a variable's resolution: above every
# registered variable's upper bound (`tests/test_measures.py` holds them to it).
MAX_EDGE_UNITS: Final = 1000

# The widest span a question's bounds may have, in units of the resolution: Δ₁ ≤ 1,000, so
# VALUE_SUM_SQUARES carries noise of at most sd 500,000 σ (a table's sums of squares at σ 10
# stay within the wire's bounds).
MAX_SPAN_UNITS: Final = 2000


@dataclass(frozen=True, slots=True)
class VariableSpec:
    """A registered variable: its unit, the widest clipping bounds a question may ask
    (`lo`, `hi`, in `decimals`-digit units: the resolution is 10**-decimals), and the bin
    widths its histograms may use (in the unit)."""

    name: str
    unit: str
    lo: float
    hi: float
    decimals: int
    bin_widths: tuple[float, ...]

    @property
    def resolution(self) -> float:
        return float(10.0**-self.decimals)

    def units(self, value: float) -> int:
        """`value` in whole units of the resolution; a value not on the grid is refused (the
        bounds are public and exact)."""
        scale: int = 10**self.decimals
        scaled = value * scale
        whole = round(scaled)
        if abs(scaled - whole) > 1e-6:
            raise ValueError(
                f"bounds of {self.name} are multiples of its resolution {self.resolution:g}"
            )
        return whole


AGE: Final = VariableSpec(
    name="age", unit="years", lo=0, hi=130, decimals=0, bin_widths=(5.0, 10.0, 20.0)
)

# LOINC code → its entry. Values are in the node's canonical unit for the code (a node whose
# CDM holds another unit converts at ETL time, as its `value_as_number` is read as is).
MEASUREMENTS: Final[dict[str, VariableSpec]] = {
    "4548-4": VariableSpec("HbA1c", "%", lo=3.0, hi=20.0, decimals=1, bin_widths=(0.5, 1.0, 2.0)),
    "39156-5": VariableSpec("BMI", "kg/m2", lo=10.0, hi=70.0, decimals=1, bin_widths=(1, 2, 5)),
    "8480-6": VariableSpec(
        "systolic blood pressure", "mm[Hg]", lo=60, hi=260, decimals=0, bin_widths=(5, 10, 20)
    ),
    "2093-3": VariableSpec(
        "total cholesterol", "mg/dL", lo=50, hi=450, decimals=0, bin_widths=(10, 25, 50)
    ),
}


def bin_key(units: int, decimals: int) -> str:
    """The cell key of the bin whose lower edge is `units` (see `Clipping.edge`)."""
    return Clipping(lo=0, hi=1, decimals=decimals).edge(units)


@dataclass(frozen=True, slots=True)
class Clipping:
    """A question's bounds in units (`lo` < `hi`) and what follows from them: the centre `c`,
    the offset `k` of the squares, and each sum's sensitivity."""

    lo: int
    hi: int
    decimals: int

    @property
    def centre(self) -> int:
        return self.lo + (self.hi - self.lo) // 2

    @property
    def sum_sensitivity(self) -> int:
        """Δ₁: the most one person's centred unit moves Σu."""
        return max(self.centre - self.lo, self.hi - self.centre)

    @property
    def square_offset(self) -> int:
        """k: subtracted from every u², so that Σ(u² − k) moves by at most Δ₂."""
        return self.sum_sensitivity**2 // 2

    @property
    def squares_sensitivity(self) -> int:
        """Δ₂ = Δ₁² − k."""
        return self.sum_sensitivity**2 - self.square_offset

    @property
    def resolution(self) -> float:
        return float(10.0**-self.decimals)

    def value(self, units: float) -> float:
        """A centred unit (or a mean of them) back in the variable's unit."""
        return (units + self.centre) * self.resolution

    def edge(self, units: int) -> str:
        """A bin's lower edge (in units) as a cell key: in the variable's unit, with its
        decimals ("6.5", "40"), as the SQL spells it."""
        if self.decimals == 0:
            return str(units)
        scale = 10**self.decimals
        return f"{units // scale}.{units % scale:0{self.decimals}d}"

    def centred(self, value: float) -> int:
        """A value as a node counts it: clipped, in whole units, centred (for tests and the
        reference computation; the nodes compute it in SQL)."""
        scale: int = 10**self.decimals
        whole = math.floor(value * scale + 0.5)  # as the SQL rounds: half up
        return min(max(whole, self.lo), self.hi) - self.centre
