"""A set of tables released together, and the linear relations between them.

One answer releases several tables of one population: the total, breakdowns and (at the
gateway) per-country values and pooled values. Whenever the dimensions of one table are a
subset of another's, each cell of the smaller table is the sum of the matching cells of the
larger one: that is what an attacker subtracts. Tables that are not released but are margins
or parts of released ones (the per-country parts of a pooled table; the common margin of two
released tables) are `hidden`: they take part in the relations with unknown values.

A cell a node did not send is an empty group: its absence is public and it adds 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Final

from policies.profiles import DisclosureProfile
from schema.codes import Dimension, Jurisdiction
from schema.query import Breakdown
from schema.result import Value

CellKey = tuple[str, ...]
CellId = tuple[Breakdown, CellKey]

PRIMARY_SUPPRESSION: Final = "PRIMARY_SUPPRESSION"
SECONDARY_SUPPRESSION: Final = "SECONDARY_SUPPRESSION"


@dataclass(frozen=True, slots=True)
class TableCell:
    """A cell and what protects it: its value, the profile that applies to it, the
    jurisdiction whose rule that is (None for a pooled cell) and, at a node only, its cell
    key (policies.perturbation)."""

    value: Value
    profile: DisclosureProfile
    jurisdiction: Jurisdiction | None = None
    cell_key: int | None = None


@dataclass(frozen=True, slots=True)
class TableSet:
    """Tables by breakdown, cells by key. Breakdowns in `hidden` are not released: they are
    known to the side protecting the tables, not to the researcher."""

    tables: Mapping[Breakdown, Mapping[CellKey, TableCell]]
    hidden: frozenset[Breakdown] = field(default_factory=frozenset)

    def released(self) -> Iterator[tuple[CellId, TableCell]]:
        for by, cells in self.tables.items():
            if by not in self.hidden:
                for key, cell in cells.items():
                    yield (by, key), cell

    def cell(self, cell_id: CellId) -> TableCell:
        by, key = cell_id
        return self.tables[by][key]

    def map_cells(self, rule: Callable[[TableCell], Value]) -> TableSet:
        """Every cell (hidden ones too) through a per-cell rule."""
        return replace(
            self,
            tables={
                by: {key: replace(cell, value=rule(cell)) for key, cell in cells.items()}
                for by, cells in self.tables.items()
            },
        )

    def with_values(self, values: Mapping[CellId, Value]) -> TableSet:
        tables = {by: dict(cells) for by, cells in self.tables.items()}
        for (by, key), value in values.items():
            tables[by][key] = replace(tables[by][key], value=value)
        return replace(self, tables=tables)


@dataclass(frozen=True, slots=True)
class Relation:
    """`total` is the sum of `parts` (cells absent from the tables count 0)."""

    total: CellId
    parts: tuple[CellId, ...]


@dataclass(frozen=True, slots=True)
class Lattice:
    """The table set closed under common margins, with every margin relation. Cells of the
    margins added here (`margins`) exist only as unknowns."""

    cells: tuple[CellId, ...]
    margins: frozenset[CellId]
    relations: tuple[Relation, ...]
    # The relations each cell takes part in.
    touching: Mapping[CellId, tuple[Relation, ...]]


def lattice(tables: TableSet) -> Lattice:
    breakdowns = _closed(list(tables.tables))
    keys: dict[Breakdown, set[CellKey]] = {by: set(tables.tables.get(by, {})) for by in breakdowns}
    # A margin that is not in the table set gets the keys of the tables it is a margin of.
    for small in breakdowns:
        if small in tables.tables:
            continue
        for big in breakdowns:
            if big in tables.tables and set(small) < set(big):
                keys[small] |= {_project(big, key, small) for key in tables.tables[big]}
    relations: list[Relation] = []
    for small in breakdowns:
        for big in breakdowns:
            if not set(small) < set(big):
                continue
            parts: dict[CellKey, list[CellId]] = {key: [] for key in keys[small]}
            for key in sorted(keys[big]):
                parts.setdefault(_project(big, key, small), []).append((big, key))
            relations.extend(
                Relation(total=(small, key), parts=tuple(parts[key])) for key in sorted(parts)
            )
    cells = tuple((by, key) for by in breakdowns for key in sorted(keys[by]))
    margins = frozenset(cell for cell in cells if cell[0] not in tables.tables)
    touching: dict[CellId, list[Relation]] = {}
    for relation in relations:
        for cell in (relation.total, *relation.parts):
            touching.setdefault(cell, []).append(relation)
    return Lattice(
        cells=cells,
        margins=margins,
        relations=tuple(relations),
        touching={cell: tuple(found) for cell, found in touching.items()},
    )


def _closed(breakdowns: list[Breakdown]) -> list[Breakdown]:
    """The breakdowns and every common margin of two of them (repeated until closed), each
    in a canonical dimension order when it is new."""
    known = {frozenset(by): by for by in breakdowns}
    changed = True
    while changed:
        changed = False
        for a, b in combinations(list(known), 2):
            common = a & b
            if common not in known:
                known[common] = tuple(d for d in Dimension if d in common)
                changed = True
    return sorted(known.values(), key=lambda by: (len(by), [list(Dimension).index(d) for d in by]))


def _project(big: Breakdown, key: CellKey, small: Breakdown) -> CellKey:
    values = dict(zip(big, key, strict=True))
    return tuple(values[d] for d in small)
