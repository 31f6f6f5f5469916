"""Combining node answers: per-node counts, the pooled total and every breakdown table, each
released cell protected again with the gateway's rules. Pure functions, no I/O.

A pooled cell is the sum of the cell over the nodes that answered OK (a cell a node did not
send counts 0). Each node's part is first protected with that node's own profile, as if
released alone; if any part is then suppressed, the pooled cell is suppressed too: adding up
numbers that could not be released would need secure aggregation, so they are never computed
(otherwise the pool minus the released parts would give the withheld one away).

Then everything released together — the pooled total, the per-country values, every
breakdown, and the per-country parts of pooled breakdowns as unknowns — goes through the
gateway's table rules at once (secondary suppression), so that no suppressed count can be
recomputed from the others: not within a table, and not across borders (the pooled value
minus the other countries).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from gateway.nodes import CellKey, NodeOutcome
from policies.disclosure import (
    GATEWAY_RULES,
    GATEWAY_TABLE_RULES,
    CellContext,
    protect,
    with_reason,
)
from policies.profiles import DisclosureProfile, strictest
from policies.tables import TableCell, TableSet
from schema.codes import Dimension, Jurisdiction, NodeStatus, ValueStatus
from schema.query import Breakdown
from schema.result import Cell, DimensionValue, Reason, Value
from schema.wire import node_dimensions

INCOMPLETE_POOL: Final = "INCOMPLETE_POOL"
IMPLAUSIBLE_POOL: Final = "IMPLAUSIBLE_POOL"
# More persons than live in the EU and EEA together: no count, a node's or a pooled one, can be
# larger. (It also keeps every released count within GraphQL's 32-bit Int.)
MAX_PERSONS: Final = 600_000_000
PARTIAL: Final = "PARTIAL"
NO_NODE_ANSWERED: Final = "NO_NODE_ANSWERED"

# From most to least exact: a pooled value is as inexact as its least exact part.
_EXACTNESS: Final = (ValueStatus.EXACT, ValueStatus.ROUNDED, ValueStatus.PERTURBED)

Profiles = Callable[[Jurisdiction], DisclosureProfile]


@dataclass(frozen=True, slots=True)
class NodeResult:
    jurisdiction: Jurisdiction
    status: NodeStatus
    latency_ms: float | None
    count: Value | None
    reasons: tuple[Reason, ...]
    error: str | None


@dataclass(frozen=True, slots=True)
class Combined:
    count: Value
    by_jurisdiction: tuple[NodeResult, ...]
    tables: Mapping[Breakdown, tuple[Cell, ...]]


def combine(
    tables: Sequence[Breakdown],
    outcomes: Sequence[NodeOutcome],
    profiles: Profiles,
) -> Combined:
    ok = [o for o in outcomes if o.status is NodeStatus.OK]
    # Each node's cells, protected with its own profile as if released alone: once, then
    # shared by the per-node values, the pooled cells and the per-country parts.
    parts = {o.jurisdiction: released_alone(o, profiles) for o in ok}
    pooled_context = _context([o.jurisdiction for o in ok], profiles)
    combined = Combined(
        count=pooled_total(outcomes, parts, pooled_context),
        by_jurisdiction=tuple(node_result(o, parts) for o in outcomes),
        tables={table: combine_table(table, parts, pooled_context) for table in tables},
    )
    if not ok:
        return combined
    return protect_released(combined, parts, pooled_context, profiles)


BY_COUNTRY: Final[Breakdown] = (Dimension.JURISDICTION,)


def protect_released(
    combined: Combined,
    parts: Mapping[Jurisdiction, NodeTables],
    pooled_context: CellContext,
    profiles: Profiles,
) -> Combined:
    """The gateway's table rules over everything released at once (see the module doc)."""

    def pooled(value: Value) -> TableCell:
        return TableCell(value, pooled_context.profile, pooled_context.jurisdiction)

    def national(jurisdiction: Jurisdiction, value: Value) -> TableCell:
        return TableCell(value, profiles(jurisdiction), jurisdiction)

    partial = [r for r in combined.count.reasons if r.rule == PARTIAL]
    total = combined.count.model_copy(
        update={"reasons": [r for r in combined.count.reasons if r.rule != PARTIAL]}
    )
    sets: dict[Breakdown, dict[CellKey, TableCell]] = {
        (): {(): pooled(total)},
        BY_COUNTRY: {
            (n.jurisdiction.value,): national(n.jurisdiction, n.count)
            for n in combined.by_jurisdiction
            if n.count is not None
        },
    }
    released: dict[Breakdown, Breakdown] = {}  # asked table -> its entry in `sets`
    by_dimensions = {frozenset(b): b for b in sets}
    for table, cells in combined.tables.items():
        entry = by_dimensions.setdefault(frozenset(table), table)
        released[table] = entry
        if entry is not table:
            continue  # the total, or the per-country values, asked as a breakdown
        country = table.index(Dimension.JURISDICTION) if Dimension.JURISDICTION in table else None
        sets[table] = {
            key: national(Jurisdiction(key[country]), c.count)
            if country is not None
            else pooled(c.count)
            for c in cells
            for key in [tuple(d.value for d in c.dimensions)]
        }
    hidden: list[Breakdown] = []
    for table in list(combined.tables):
        per_country = (Dimension.JURISDICTION, *table)
        if Dimension.JURISDICTION in table or frozenset(per_country) in by_dimensions:
            continue
        # The per-country parts of a pooled table: not released, but related to it.
        by_dimensions[frozenset(per_country)] = per_country
        hidden.append(per_country)
        node_table = node_dimensions(table)
        sets[per_country] = {
            (j.value, *key): national(j, value)
            for j, tables in parts.items()
            for key, value in tables[node_table].items()
        }
    protected = TableSet(sets, hidden=frozenset(hidden))
    for rule in GATEWAY_TABLE_RULES:
        protected = rule(protected)

    def value_of(table: Breakdown, key: CellKey) -> Value:
        return protected.tables[table][key].value

    count = value_of((), ())
    for reason in partial:
        count = with_reason(count, reason)
    by_jurisdiction = tuple(
        n if n.count is None else replace(n, count=value_of(BY_COUNTRY, (n.jurisdiction.value,)))
        for n in combined.by_jurisdiction
    )
    tables: dict[Breakdown, tuple[Cell, ...]] = {}
    for table, cells in combined.tables.items():
        entry = released[table]
        tables[table] = tuple(
            _cell(c.dimensions, value_of(entry, _entry_key(table, entry, c))) for c in cells
        )
    if () in tables:
        tables[()] = tuple(_cell(c.dimensions, count) for c in tables[()])
    return Combined(count=count, by_jurisdiction=by_jurisdiction, tables=tables)


def _entry_key(table: Breakdown, entry: Breakdown, cell: Cell) -> CellKey:
    values = {d.name: d.value for d in cell.dimensions}
    return tuple(values[d] for d in entry)


NodeTables = Mapping[Breakdown, Mapping[CellKey, Value]]


def released_alone(outcome: NodeOutcome, profiles: Profiles) -> NodeTables:
    """A node's cells under the gateway's cell rules with the node's own profile."""
    context = _context([outcome.jurisdiction], profiles)
    return {
        table: {key: protect(value, context, GATEWAY_RULES) for key, value in cells.items()}
        for table, cells in outcome.tables.items()
    }


def node_result(outcome: NodeOutcome, parts: Mapping[Jurisdiction, NodeTables]) -> NodeResult:
    count = None
    if outcome.status is NodeStatus.OK:
        count = parts[outcome.jurisdiction][()][()]
    error = None
    if outcome.status not in (NodeStatus.OK, NodeStatus.DENIED):
        error = outcome.message or outcome.status.value
        if outcome.error_code is not None:
            error = f"{outcome.error_code.value}: {error}"
    return NodeResult(
        jurisdiction=outcome.jurisdiction,
        status=outcome.status,
        latency_ms=outcome.latency_ms,
        count=count,
        reasons=outcome.reasons,
        error=error,
    )


def pooled_total(
    outcomes: Sequence[NodeOutcome],
    parts: Mapping[Jurisdiction, NodeTables],
    context: CellContext,
) -> Value:
    missing = ", ".join(
        f"{o.jurisdiction.value} ({o.status.value})"
        for o in outcomes
        if o.status is not NodeStatus.OK
    )
    if not parts:
        return Value.suppressed(
            Reason(rule=NO_NODE_ANSWERED, message=f"no node answered: {missing or 'none asked'}")
        )
    total = protect(
        pool([(j, tables[()][()]) for j, tables in parts.items()]), context, GATEWAY_RULES
    )
    if missing:
        total = with_reason(total, Reason(rule=PARTIAL, message=f"no answer from {missing}"))
    return total


def combine_table(
    table: Breakdown, parts: Mapping[Jurisdiction, NodeTables], pooled: CellContext
) -> tuple[Cell, ...]:
    node_table = node_dimensions(table)
    cells: list[tuple[tuple[str, ...], Value]] = []
    if Dimension.JURISDICTION in table:
        # Each cell comes from one node: protected with that node's own profile.
        for j, tables in parts.items():
            for key, value in tables[node_table].items():
                cells.append((_with_jurisdiction(table, key, j), value))
    else:
        keys = dict.fromkeys(key for tables in parts.values() for key in tables[node_table])
        for key in keys:
            # A node sends no cell for an empty group: its absence is already public, it
            # adds 0.
            pooled_parts = [(j, tables[node_table].get(key, _ZERO)) for j, tables in parts.items()]
            cells.append((key, protect(pool(pooled_parts), pooled, GATEWAY_RULES)))
    cells.sort(key=lambda cell: _sort_key(table, cell[0]))
    return tuple(
        _cell([_dimension(d, v) for d, v in zip(table, key, strict=True)], value)
        for key, value in cells
    )


# Built from parts that are already valid (vetted keys, protected values): constructed, not
# validated again, since this runs for every cell of every answer.
def _cell(dimensions: list[DimensionValue], count: Value) -> Cell:
    return Cell.model_construct(dimensions=dimensions, count=count)


def _dimension(name: Dimension, value: str) -> DimensionValue:
    return DimensionValue.model_construct(name=name, value=value)


def pool(parts: Sequence[tuple[Jurisdiction, Value]]) -> Value:
    """The sum of released parts; suppressed when any part was not released, or when the
    sum is more persons than exist."""
    withheld = [j for j, v in parts if v.value is None]
    if withheld:
        return Value.suppressed(
            Reason(
                rule=INCOMPLETE_POOL,
                jurisdiction=withheld[0] if len(withheld) == 1 else None,
                message=f"not released by {', '.join(j.value for j in withheld)}; pooling "
                "withheld counts needs secure aggregation",
            )
        )
    values = [v for _, v in parts]
    total = sum(v.value or 0 for v in values)
    if total > MAX_PERSONS:
        # Each part passed vetting on its own; together they describe more persons than
        # exist, so at least one is false, and no one can tell which.
        return Value.suppressed(
            Reason(
                rule=IMPLAUSIBLE_POOL,
                message="the countries' counts add up to more persons than live in Europe",
            )
        )
    bounds = [v.bound for v in values if v.bound is not None]
    return Value(
        value=total,
        status=max((v.status for v in values), key=_EXACTNESS.index, default=ValueStatus.EXACT),
        reasons=list(dict.fromkeys(r for v in values for r in v.reasons)),
        bound=sum(bounds) if bounds else None,
    )


def _context(contributors: Sequence[Jurisdiction], profiles: Profiles) -> CellContext:
    """The gateway's disclosure context for a cell of these jurisdictions: the strictest of
    their profiles; reasons name a jurisdiction only when there is one."""
    return CellContext(
        profile=strictest(profiles(j) for j in contributors),
        jurisdiction=contributors[0] if len(contributors) == 1 else None,
    )


_ZERO: Final = Value.exact(0)


def _with_jurisdiction(table: Breakdown, key: CellKey, jurisdiction: Jurisdiction) -> CellKey:
    values = iter(key)
    return tuple(jurisdiction.value if d is Dimension.JURISDICTION else next(values) for d in table)


_JURISDICTION_ORDER: Final = {j.value: i for i, j in enumerate(Jurisdiction)}


def _sort_key(table: Breakdown, key: CellKey) -> tuple[tuple[tuple[int, int, str], ...], ...]:
    return tuple(
        ((0, _JURISDICTION_ORDER.get(v, -1), v),) if d is Dimension.JURISDICTION else _natural(v)
        for d, v in zip(table, key, strict=True)
    )


@functools.lru_cache(maxsize=4096)
def _natural(text: str) -> tuple[tuple[int, int, str], ...]:
    # "5-9" before "10-14", "90+" last: numbers compare as numbers.
    return tuple(
        (0, int(part), "") if part.isascii() and part.isdigit() else (1, 0, part)
        for part in re.split(r"([0-9]+)", text)
        if part
    )
