"""From counted tables to what a node releases: full public domains, noise once, values.

Every step is small and pure but `draw`, which takes its noise from a `NoiseSource`:

- `full_table` lays a table's counts over its public domain (`policies.domain`): every cell,
  counted or not, in the canonical dimension order the answer store keys them by;
- `draw` adds noise to every cell of the tables no stored answer covers;
- `released_table` turns stored tables (one per measure asked) into the `NodeTable` that
  leaves the node, through each measure's release rule (`policies.measures`: for counts
  `policies.disclosure.release` and the profile's cell rules), cells in the asked order.

Counts exist unprotected only between the database and `draw`, and are never logged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any, Final

from connectors.answers import CellKey, StoredTable
from connectors.canonical import canonical_breakdown
from connectors.compiler import TableRows
from connectors.noise import NoiseSource
from policies.disclosure import CellContext
from policies.domain import table_domain
from policies.measures import PROTECTIONS, count_withheld, n_withheld
from policies.person_time import person_time_reasons
from schema.codes import MeasureKind, ValueStatus
from schema.query import Breakdown, CohortQuery
from schema.result import Value
from schema.wire import NodeCell, NodeTable

Counts = Mapping[CellKey, int]
_SUMS: Final = (MeasureKind.VALUE_SUM, MeasureKind.VALUE_SUM_SQUARES)


def full_table(by: Breakdown, counts: Counts, query: CohortQuery) -> dict[CellKey, int]:
    """Every cell of the table's public domain with its count (0 where nobody was counted),
    keys in the canonical dimension order. Counted groups outside the domain are dropped."""
    canonical = canonical_breakdown(by)
    domain = table_domain(canonical, query)
    reordered: Counts = counts
    if canonical != by:
        # Two dimensions or more: itemgetter gives a tuple.
        pick = itemgetter(*(by.index(d) for d in canonical))
        reordered = {pick(key): n for key, n in counts.items()}
    return {key: reordered.get(key, 0) for key in domain}


def draw(
    tables: Mapping[str, Mapping[CellKey, int]],
    sd: float | Mapping[str, float],
    noise: NoiseSource,
) -> dict[str, StoredTable]:
    """Each table (by question digest) with noise of standard deviation `sd` on every cell
    (or each table's own sd, by digest: a sum's is its sensitivity times a count's)."""
    drawn = {}
    for question, cells in tables.items():
        keys = list(cells)
        table_sd = sd if isinstance(sd, int | float) else sd[question]
        noisy = noise.draw([cells[key] for key in keys], table_sd)
        drawn[question] = StoredTable(dict(zip(keys, noisy, strict=True)))
    return drawn


class ReleasedValues:
    """Released values made once and shared, by measure, noise sd, context and noisy value:
    a released value depends on nothing else, and values are immutable. One per node, so
    that its questions' tables share them too; at most `per_kind` values are kept for each
    measure, sd and context (past it they are made afresh: noisy values of large cohorts
    rarely repeat). Its keys are noisy values, kept in memory only, as the stored answers'
    are."""

    def __init__(self, per_kind: int = 4096) -> None:
        self._per_kind = per_kind
        self._made: dict[tuple[MeasureKind, float, CellContext], dict[int, Value]] = {}

    def made(self, kind: MeasureKind, sd: float, ctx: CellContext) -> dict[int, Value]:
        key = (kind, sd, ctx)
        made = self._made.get(key)
        if made is None or len(made) > self._per_kind:
            if len(self._made) >= _CONTEXTS:
                self._made.clear()
            made = self._made[key] = {}
        return made


# Released-value caches kept at once: one per measure, sd (standard or coarse) and policy in
# force; past it they start afresh.
_CONTEXTS: Final = 8


def released_table(
    by: Breakdown,
    stored: Mapping[MeasureKind, StoredTable],
    sd: float,
    ctx: CellContext,
    values: ReleasedValues | None = None,
    sds: Mapping[MeasureKind, float] | None = None,
    most: Mapping[MeasureKind, int] | None = None,
) -> NodeTable:
    """The table as the node releases it: each measure's noisy value through that measure's
    disclosure rules (`policies.measures`), keys in `by`'s order, cells sorted by key. Every
    measure's stored table has the same keys (the table's public domain). `values` shares
    the released values with other tables (by default this table's own). `sds`: a measure's
    noise sd where it is not `sd` (a sum's). A cell's sums of a variable are withheld where
    its VALUE_N is (LOW): a mean is released only where its count of persons is, and which
    sums are withheld depends on released values only. A cell's days at risk (PERSON_DAYS)
    are withheld where its count of persons is, and where the profile's magnitude rules find
    them dominated with at most `most[PERSON_DAYS]` days a person (`policies.person_time`;
    most: each measure's largest contribution of one person, its sensitivity)."""
    canonical = canonical_breakdown(by)
    order = [canonical.index(d) for d in by]
    kinds = list(stored)
    keys = list(stored[kinds[0]].cells)
    if order == sorted(order):
        cells = sorted((key, key) for key in keys)
    else:
        pick = itemgetter(*order)  # two dimensions or more: a tuple
        cells = sorted((pick(key), key) for key in keys)
    shared = ReleasedValues() if values is None else values
    of = sds or {}
    measures = [
        (
            k,
            PROTECTIONS[k].released,
            stored[k].cells,
            of.get(k, sd),
            shared.made(k, of.get(k, sd), ctx),
        )
        for k in kinds
    ]
    linked = MeasureKind.VALUE_N in stored
    days_most = None if most is None else most.get(MeasureKind.PERSON_DAYS)
    if MeasureKind.PERSON_DAYS in stored and days_most is None:
        raise ValueError("days at risk are released knowing the most one person adds")
    released: list[dict[str, Any]] = []
    for key, stored_key in cells:
        cell = {}
        for kind, release, noisy_cells, kind_sd, of_kind in measures:
            noisy = noisy_cells[stored_key]
            value = of_kind.get(noisy)
            if value is None:
                value = of_kind[noisy] = release(noisy, kind_sd, ctx)
            cell[kind] = value
        if linked and cell[MeasureKind.VALUE_N].withheld:
            for kind in _SUMS:
                if kind in cell:
                    cell[kind] = Value.low(n_withheld(ctx.jurisdiction), sd=of.get(kind, sd))
        if days_most is not None:
            cell[MeasureKind.PERSON_DAYS] = _days_released(cell, days_most, ctx)
        released.append({"key": list(key), "values": cell})
    return NodeTable.trusted(by=by, cells=NodeCell.trusted_each(released))


def _days_released(cell: Mapping[MeasureKind, Value], most: int, ctx: CellContext) -> Value:
    """A cell's days at risk as released: withheld with its count of persons (a magnitude
    over fewer persons than the minimum), or where the magnitude rules find them dominated."""
    days = cell[MeasureKind.PERSON_DAYS]
    if days.withheld:
        return days
    if cell[MeasureKind.PERSON_COUNT].withheld:
        return Value.low(count_withheld(ctx.jurisdiction), sd=days.sd)
    reasons = person_time_reasons(days.value or 0, most, ctx.profile, ctx.jurisdiction)
    if reasons:
        return Value.trusted(
            value=None,
            status=ValueStatus.SUPPRESSED,
            reasons=reasons,
            bound=None,
            sd=days.sd,
            contributors=None,
        )
    return days


def counts_by_table(tables: Sequence[TableRows], measure: MeasureKind) -> dict[Breakdown, Counts]:
    """Each table's exact values of `measure`, by cell key."""
    return {by: {cell.key: cell.values[measure] for cell in cells} for by, cells in tables}
