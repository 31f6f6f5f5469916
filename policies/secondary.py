"""Secondary suppression: suppress further cells until no suppressed count can be recomputed,
or bounded more tightly, from what is released.

The promise, checked by solving the attacker's problem: for every count suppressed because it
is small (PRIMARY_SUPPRESSION), the interval of values it can take given every released value,
every margin relation (policies.tables) and what each status says (a primary-suppressed count
lies in [1, t-1], a secondary-suppressed one is at least t, a perturbed or rounded one lies
within its bound of the released value) is the same as when nothing but the statuses were
released. The released numbers then tell nothing more about a small count than that it is
small.

The cells to add are chosen by the usual heuristic: a relation in which a suppressed cell is
the only unknown gives it away, so another of its cells is suppressed, preferring a part over a
total and the smallest count that is large enough (at least 2t) to hide the small one; then each
small count's interval is computed by linear programming (HiGHS through scipy) over the cells
connected to it, and while it is narrower than promised, one more cell of its relations is
suppressed. Suppression only ever grows, so this ends; in the worst case everything connected
is suppressed (fail closed).

An integer-programming attacker can sometimes narrow an interval further than linear
programming; for tables of up to two dimensions with their margins the two agree (the
constraint matrix is totally unimodular). The attack tests use integer programming.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_array

from policies.tables import (
    PRIMARY_SUPPRESSION,
    SECONDARY_SUPPRESSION,
    CellId,
    Lattice,
    Relation,
    TableCell,
    TableSet,
    lattice,
)
from schema.codes import ValueStatus
from schema.result import Reason, Value

INF: Final = math.inf
_TOLERANCE: Final = 1e-6

Interval = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Knowledge:
    """What an attacker knows of each cell: an interval (a point for an exact released
    count). Cells not listed are unknown and at least `floor`."""

    bounds: Mapping[CellId, Interval]

    def of(self, cell: CellId) -> Interval:
        return self.bounds.get(cell, (_lowest(cell), INF))

    def known(self, cell: CellId) -> bool:
        lo, hi = self.of(cell)
        return lo == hi


def _lowest(cell: CellId) -> float:
    # Every listed cell of a breakdown is a non-empty group; only the total may be 0.
    return 0.0 if not cell[0] else 1.0


def prior(cell_id: CellId, cell: TableCell, *, hidden: bool, released: bool = True) -> Interval:
    """What the released answer says about one cell, before any arithmetic."""
    lowest = _lowest(cell_id)
    value = cell.value
    if value.status is ValueStatus.SUPPRESSED:
        rules = {reason.rule for reason in value.reasons}
        t = cell.profile.min_count
        slack = value.bound or 0.0
        if PRIMARY_SUPPRESSION in rules:
            return (lowest, t - 1 + slack)
        if SECONDARY_SUPPRESSION in rules:
            return (float(t), INF)
        return (lowest, INF)
    if hidden or not released or value.value is None:
        return (lowest, INF)
    bound = value.bound or 0.0
    return (max(lowest, value.value - bound), value.value + bound)


def knowledge(tables: TableSet, *, with_releases: bool = True) -> Knowledge:
    """The attacker's knowledge of a table set; without releases, only the statuses."""
    return Knowledge(
        {
            (by, key): prior((by, key), cell, hidden=by in tables.hidden, released=with_releases)
            for by, cells in tables.tables.items()
            for key, cell in cells.items()
        }
    )


def interval(target: CellId, lat: Lattice, known: Knowledge) -> Interval:
    """The smallest and largest value `target` can take (linear programming over the cells
    connected to it by relations through unknown cells)."""
    variables, relations = _component(target, lat, known)
    index = {cell: i for i, cell in enumerate(variables)}
    rows, cols, data, rhs = [], [], [], []
    for r, relation in enumerate(relations):
        constant = 0.0
        for cell, sign in ((relation.total, -1.0), *((part, 1.0) for part in relation.parts)):
            if cell in index:
                rows.append(r)
                cols.append(index[cell])
                data.append(sign)
            else:
                constant += sign * known.of(cell)[0]
        rhs.append(-constant)
    bounds = [known.of(cell) for cell in variables]
    a_eq = (
        coo_array((data, (rows, cols)), shape=(len(relations), len(variables))).tocsr()
        if relations
        else None
    )
    b_eq = np.array(rhs) if relations else None
    ends = []
    for sign in (1.0, -1.0):
        objective = np.zeros(len(variables))
        objective[index[target]] = sign
        result = linprog(
            objective,
            A_eq=a_eq,
            b_eq=b_eq,
            bounds=[(lo, None if hi == INF else hi) for lo, hi in bounds],
            method="highs",
        )
        if result.status == 3:  # unbounded
            ends.append(-sign * INF)
        elif result.status != 0:
            raise InfeasibleRelations
        else:
            ends.append(sign * float(result.fun))
    return (ends[0], ends[1])


class InfeasibleRelations(ArithmeticError):
    """No values satisfy the relations: the tables are inconsistent with their statuses."""


def _component(
    target: CellId, lat: Lattice, known: Knowledge
) -> tuple[list[CellId], list[Relation]]:
    seen = {target}
    order = [target]
    used: dict[int, Relation] = {}
    queue = deque([target])
    while queue:
        cell = queue.popleft()
        for relation in lat.touching.get(cell, ()):
            if id(relation) in used:
                continue
            used[id(relation)] = relation
            for other in (relation.total, *relation.parts):
                if other not in seen and not known.known(other):
                    seen.add(other)
                    order.append(other)
                    queue.append(other)
    return order, list(used.values())


def covers(outer: Interval, inner: Interval) -> bool:
    return outer[0] <= inner[0] + _TOLERANCE and outer[1] >= inner[1] - _TOLERANCE


def is_protected(target: CellId, tables: TableSet, lat: Lattice) -> bool:
    """Whether the released values narrow `target` no more than its status alone does."""
    try:
        found = interval(target, lat, knowledge(tables))
    except InfeasibleRelations:
        return False
    own = prior(target, tables.cell(target), hidden=target[0] in tables.hidden)
    if covers(found, own):
        return True
    try:
        reference = interval(target, lat, knowledge(tables, with_releases=False))
    except InfeasibleRelations:
        return False
    return covers(found, reference)


def secondary_suppression(tables: TableSet) -> TableSet:
    """The table set with as many further cells suppressed as needed (see module doc)."""
    small = [
        cell_id
        for cell_id, cell in _all_cells(tables)
        if cell.profile.secondary_suppression and _is_primary(cell.value)
    ]
    if not small:
        return tables
    lat = lattice(tables)
    while True:
        tables = _close_singletons(tables, lat)
        exposed = next((c for c in small if not is_protected(c, tables, lat)), None)
        if exposed is None:
            return tables
        added = _complement_for(exposed, tables, lat)
        if added is None:
            # Nothing left to suppress around it: everything connected is suppressed.
            small.remove(exposed)
            continue
        tables = _suppress(tables, added)


def _all_cells(tables: TableSet) -> Iterable[tuple[CellId, TableCell]]:
    for by, cells in tables.tables.items():
        for key, cell in sorted(cells.items()):
            yield (by, key), cell


def _is_primary(value: Value) -> bool:
    return value.status is ValueStatus.SUPPRESSED and any(
        reason.rule == PRIMARY_SUPPRESSION for reason in value.reasons
    )


def _free(cell: CellId, tables: TableSet, lat: Lattice) -> bool:
    """Unknown to the researcher: suppressed, hidden, or a margin that is not released."""
    if cell in lat.margins or cell[0] in tables.hidden:
        return True
    return tables.cell(cell).value.status is ValueStatus.SUPPRESSED


def _candidate(cell: CellId, tables: TableSet, lat: Lattice) -> bool:
    if _free(cell, tables, lat):
        return False
    table_cell = tables.cell(cell)
    value = table_cell.value.value
    return value is not None and value >= table_cell.profile.min_count and value > 0


def _preference(
    cell: CellId, relation: Relation, tables: TableSet
) -> tuple[int, int, float, int, CellId]:
    table_cell = tables.cell(cell)
    value = float(table_cell.value.value or 0)
    large_enough = value >= 2 * table_cell.profile.min_count
    return (
        1 if cell == relation.total else 0,
        0 if large_enough else 1,
        value if large_enough else -value,
        len(cell[0]),
        cell,
    )


def _pick(relation: Relation, tables: TableSet, lat: Lattice) -> CellId | None:
    candidates = [c for c in (relation.total, *relation.parts) if _candidate(c, tables, lat)]
    if not candidates:
        return None
    return min(candidates, key=lambda c: _preference(c, relation, tables))


def _close_singletons(tables: TableSet, lat: Lattice) -> TableSet:
    """Until no relation has a suppressed cell as its only unknown."""
    changed = True
    while changed:
        changed = False
        for relation in lat.relations:
            members = (relation.total, *relation.parts)
            free = [c for c in members if _free(c, tables, lat)]
            if len(free) != 1 or free[0] in lat.margins or free[0][0] in tables.hidden:
                continue
            added = _pick(relation, tables, lat)
            if added is not None:
                tables = _suppress(tables, added)
                changed = True
    return tables


def _complement_for(target: CellId, tables: TableSet, lat: Lattice) -> CellId | None:
    """One more cell to suppress for `target`: from its own relations with the fewest
    unknowns first, then from those of the unknown cells connected to it."""
    seen = {target}
    queue = deque([target])
    while queue:
        cell = queue.popleft()
        relations = sorted(
            lat.touching.get(cell, ()),
            key=lambda r: sum(_free(c, tables, lat) for c in (r.total, *r.parts)),
        )
        for relation in relations:
            picked = _pick(relation, tables, lat)
            if picked is not None:
                return picked
        for relation in relations:
            for other in (relation.total, *relation.parts):
                if other not in seen and _free(other, tables, lat):
                    seen.add(other)
                    queue.append(other)
    return None


def _suppress(tables: TableSet, cell_id: CellId) -> TableSet:
    cell = tables.cell(cell_id)
    reason = Reason(
        rule=SECONDARY_SUPPRESSION,
        jurisdiction=cell.jurisdiction,
        message="suppressed so that a small count cannot be recomputed from the other numbers",
    )
    return tables.with_values({cell_id: Value.suppressed(reason)})
