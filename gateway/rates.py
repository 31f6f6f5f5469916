"""An incidence rate in every cell, from the nodes' released events and days at risk.

Each node releases per cell the persons whose first outcome fell in their follow-up
(OUTCOME_EVENTS, a noisy count under the full pipeline) and their days at risk (PERSON_DAYS, a
noisy sum, each person's days clipped to the follow-up's length, withheld with the cell's count
of persons or by the magnitude rules: `policies.person_time`). The gateway pools each as counts
pool (`gateway.combine`: the sum of the nodes' released parts, withheld with INCOMPLETE_POOL
when one is withheld), so the pooled events and days are the union's, as if in one place, plus
noise. Then, per cell (each country's and the pooled):

    person-years = days / 365.25        rate = events / person-years × per

with an exact Poisson 95% interval for the rate (Garwood 1936): for d events,
[χ²(0.025; 2d) / 2, χ²(0.975; 2d + 2) / 2] / person-years × per (0 below for no event). The
interval is the sampling's; what the noise adds is each number's `sd` (to first order:
∂rate/∂d = per / PY, ∂rate/∂PY = −rate / PY). Every number is withheld where the events or the
days are; a rate over no day at risk (noise can make it so) is SUPPRESSED (NO_PERSON_TIME).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Final

from scipy import stats

from gateway.combine import Combined, Profiles, combine
from gateway.nodes import NodeOutcome
from schema.codes import MeasureKind, ValueStatus
from schema.measures import asked
from schema.query import RATES, Breakdown, CohortQuery
from schema.result import Cell, Estimate, Rate, Reason, Value

EVENTS, DAYS = MeasureKind.OUTCOME_EVENTS, MeasureKind.PERSON_DAYS
DAYS_PER_YEAR: Final = 365.25
CONFIDENCE: Final = 0.95
# The person-years a rate is given per, as the researcher may ask.
PERS: Final = (1_000, 10_000, 100_000, 1_000_000)
DEFAULT_PER: Final = 100_000
NO_PERSON_TIME: Final = "NO_PERSON_TIME"
_EXACTNESS: Final = (ValueStatus.EXACT, ValueStatus.ROUNDED, ValueStatus.PERTURBED)

_NO_PERSON_TIME: Final = Reason(
    rule=NO_PERSON_TIME,
    message="no day at risk once noisy: a rate needs some person-time",
)


def poisson_interval(events: int) -> tuple[float, float]:
    """Garwood's exact 95% interval for the mean of a Poisson count of `events`."""
    alpha = 1 - CONFIDENCE
    low = 0.0 if events <= 0 else float(stats.chi2.ppf(alpha / 2, 2 * events)) / 2
    high = float(stats.chi2.ppf(1 - alpha / 2, 2 * max(events, 0) + 2)) / 2
    return low, high


def rate_of(events: Value, days: Value, per: int) -> Rate:
    """One cell's rate from its released (or pooled) events and days at risk."""
    reasons = list(dict.fromkeys([*events.reasons, *days.reasons]))
    if days.withheld:
        person_years = _estimate(None, days.status, list(days.reasons), None)
    else:
        person_years = _estimate(
            (days.value or 0) / DAYS_PER_YEAR,
            days.status,
            list(days.reasons),
            None if days.sd is None else days.sd / DAYS_PER_YEAR,
        )
    withheld = next((v for v in (events, days) if v.withheld), None)
    if withheld is not None:
        status = (
            ValueStatus.LOW
            if all(v.status is ValueStatus.LOW for v in (events, days) if v.withheld)
            else ValueStatus.SUPPRESSED
        )
        empty = _estimate(None, status, reasons, None)
        return Rate.trusted(
            events=events,
            person_years=person_years,
            rate=empty,
            ci_low=empty,
            ci_high=empty,
            per=per,
        )
    d, pd = events.value or 0, days.value or 0
    if pd <= 0:
        empty = _estimate(None, ValueStatus.SUPPRESSED, [*reasons, _NO_PERSON_TIME], None)
        return Rate.trusted(
            events=events,
            person_years=person_years,
            rate=empty,
            ci_low=empty,
            ci_high=empty,
            per=per,
        )
    years = pd / DAYS_PER_YEAR
    status = max((events.status, days.status), key=_EXACTNESS.index)
    rate = max(d, 0) / years * per
    sd_events, sd_years = events.sd or 0.0, (days.sd or 0.0) / DAYS_PER_YEAR
    noise = per * math.hypot(sd_events / years, max(d, 0) / years**2 * sd_years)
    low, high = poisson_interval(d)
    return Rate.trusted(
        events=events,
        person_years=person_years,
        rate=_estimate(rate, status, reasons, noise),
        ci_low=_estimate(low / years * per, status, reasons, noise),
        ci_high=_estimate(high / years * per, status, reasons, noise),
        per=per,
    )


def with_rates(
    combined: Combined,
    query: CohortQuery,
    tables: Sequence[Breakdown],
    outcomes: Sequence[NodeOutcome],
    profiles: Profiles,
    per: int = DEFAULT_PER,
) -> Combined:
    """`combined` with the rate in every cell, each country's and the pooled total
    (unchanged when the question asks no rate)."""
    if query.outcome is None or EVENTS not in asked(query):
        return combined
    parts = {kind: combine(tables, outcomes, profiles, None, kind) for kind in RATES}

    def rate(values: Mapping[MeasureKind, Value | None]) -> Rate | None:
        events, days = values[EVENTS], values[DAYS]
        if events is None or days is None:
            return None
        return rate_of(events, days, per)

    nodes = [
        dataclasses.replace(node, rate=rate({k: parts[k].by_jurisdiction[i].count for k in RATES}))
        for i, node in enumerate(combined.by_jurisdiction)
    ]
    cells = {}
    for by, of_table in combined.tables.items():
        of_kind = {k: {_key(c): c.count for c in parts[k].tables[by]} for k in RATES}
        cells[by] = tuple(
            _with_rate(cell, rate({k: of_kind[k].get(_key(cell)) for k in RATES}))
            for cell in of_table
        )
    return dataclasses.replace(
        combined,
        rate=rate({k: parts[k].count for k in RATES}),
        by_jurisdiction=tuple(nodes),
        tables=cells,
    )


def _with_rate(cell: Cell, rate: Rate | None) -> Cell:
    return Cell.trusted(
        dimensions=cell.dimensions, count=cell.count, summary=cell.summary, rate=rate
    )


def _key(cell: Cell) -> tuple[str, ...]:
    return tuple(d.value for d in cell.dimensions)


def _estimate(
    value: float | None, status: ValueStatus, reasons: list[Reason], sd: float | None
) -> Estimate:
    # Made of valid parts (released values' statuses and reasons): not validated again.
    return Estimate.trusted(value=value, status=status, reasons=reasons, sd=sd, bound=None)
