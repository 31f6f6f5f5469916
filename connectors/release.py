"""From counted tables to what a node releases: full public domains, noise once, values.

Every step is small and pure but `draw`, which takes its noise from a `NoiseSource`:

- `full_table` lays a table's counts over its public domain (`policies.domain`): every cell,
  counted or not, in the canonical dimension order the answer store keys them by;
- `draw` adds noise to every cell of the tables no stored answer covers;
- `released_table` turns a stored table into the `NodeTable` that leaves the node, through
  `policies.disclosure.release` and the profile's cell rules, cells in the asked order.

Counts exist unprotected only between the database and `draw`, and are never logged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from connectors.answers import CellKey, StoredTable
from connectors.canonical import canonical_breakdown
from connectors.noise import NoiseSource
from policies import disclosure
from policies.disclosure import CellContext
from policies.domain import table_domain
from schema.query import Breakdown, CohortQuery
from schema.result import Value
from schema.wire import NodeCell, NodeTable

Counts = Mapping[CellKey, int]


def full_table(by: Breakdown, counts: Counts, query: CohortQuery) -> dict[CellKey, int]:
    """Every cell of the table's public domain with its count (0 where nobody was counted),
    keys in the canonical dimension order. Counted groups outside the domain are dropped."""
    canonical = canonical_breakdown(by)
    order = [by.index(d) for d in canonical]
    domain = table_domain(canonical, query)
    reordered = {tuple(key[i] for i in order): n for key, n in counts.items()}
    return {key: reordered.get(key, 0) for key in domain}


def draw(
    tables: Mapping[str, Mapping[CellKey, int]], sd: float, noise: NoiseSource
) -> dict[str, StoredTable]:
    """Each table (by question digest) with noise of standard deviation `sd` on every cell."""
    drawn = {}
    for question, cells in tables.items():
        keys = list(cells)
        noisy = noise.draw([cells[key] for key in keys], sd)
        drawn[question] = StoredTable(dict(zip(keys, noisy, strict=True)))
    return drawn


def released_table(by: Breakdown, stored: StoredTable, sd: float, ctx: CellContext) -> NodeTable:
    """The table as the node releases it: each noisy count through the disclosure rules,
    keys in `by`'s order, cells sorted by key."""
    canonical = canonical_breakdown(by)
    order = [canonical.index(d) for d in by]
    if order == sorted(order):
        cells = sorted(stored.cells.items())
    else:
        cells = sorted((tuple(key[i] for i in order), noisy) for key, noisy in stored.cells.items())
    # A released value depends on the noisy count alone: made once per count, shared by the
    # cells that have it (values are immutable).
    values: dict[int, Value] = {}
    released = []
    for key, noisy in cells:
        value = values.get(noisy)
        if value is None:
            value = values[noisy] = disclosure.protect(
                disclosure.release(noisy, sd, ctx), ctx, disclosure.NODE_RULES
            )
        released.append(NodeCell.trusted(key=list(key), count=value))
    return NodeTable.trusted(by=by, cells=released)


def counts_by_table(
    tables: Sequence[tuple[Breakdown, Sequence[tuple[CellKey, int]]]],
) -> dict[Breakdown, dict[CellKey, int]]:
    return {by: dict(cells) for by, cells in tables}
