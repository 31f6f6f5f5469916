"""The pool guard: release rules for pooled numbers next to per-node numbers, run on the
combined answer last.

A pooled number (the total, or a cell of a table without JURISDICTION) is the sum of the parts
of the nodes that answered. Shown next to those parts (each node's count, or the cells of the
same table by JURISDICTION), it must not give away a part that is not shown:

- **ISOLATES_NODE**: when exactly one contributing node's part is withheld, the pooled number
  minus the shown parts is that node's number. The pooled number is suppressed. (With several
  withheld parts it would give away their sum, which no rule released: suppressed as
  INCOMPLETE_POOL.) `gateway.combine` never pools a withheld part, so today this holds by
  construction; the rule keeps it true whatever later withholds a part after pooling
  (secondary suppression, per-node perturbation), since it looks only at what is released.
  A number pooled securely (SECURE_POOL) is left alone: its noise was drawn apart from every
  part shown, so the pool minus the shown parts is the withheld part plus noise of at least
  the pool's variance, and both releases are charged to every person counted.
- **PARTIAL**: when nodes failed (TIMEOUT, UNAVAILABLE, ERROR, REJECTED), pooled numbers cover
  the others only. Such a pool is the very number a query asking only the answering
  jurisdictions gets, and each part in it is released by its node, so by default it is
  released and marked PARTIAL; with `PartialPools.SUPPRESS` it is suppressed instead. A
  DENIED node is no failure: the denial is the policy's answer and stays the same.

Pure functions over `gateway.combine.Combined`; no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Final

from gateway.combine import INCOMPLETE_POOL, PARTIAL, Combined
from gateway.nodes import NodeOutcome
from gateway.pooling import SECURE_POOL
from gateway.settings import PartialPools
from schema.codes import Dimension, Jurisdiction, NodeStatus, ValueStatus
from schema.query import Breakdown
from schema.result import Cell, Reason, Value

ISOLATES_NODE: Final = "ISOLATES_NODE"

FAILED: Final = frozenset(
    {NodeStatus.TIMEOUT, NodeStatus.UNAVAILABLE, NodeStatus.ERROR, NodeStatus.REJECTED}
)

_Key = tuple[tuple[Dimension, str], ...]


def guard_pools(
    combined: Combined,
    outcomes: Sequence[NodeOutcome],
    partial: PartialPools = PartialPools.MARK,
) -> Combined:
    """`combined` with every pooled number that could isolate a node, or (per `partial`) that
    covers only part of the nodes, suppressed."""
    failed = [o for o in outcomes if o.status in FAILED]
    partial_reason = None
    if failed and partial is PartialPools.SUPPRESS:
        missing = ", ".join(f"{o.jurisdiction.value} ({o.status.value})" for o in failed)
        partial_reason = Reason(
            rule=PARTIAL,
            message=f"no answer from {missing}; pooled numbers over part of the nodes are "
            "not released",
        )

    shown = {n.jurisdiction: n.count for n in combined.by_jurisdiction if n.status is NodeStatus.OK}
    count = _guard(combined.count, {j: v for j, v in shown.items() if v is not None})
    if partial_reason is not None:
        count = _suppress(count, partial_reason)

    tables: dict[Breakdown, tuple[Cell, ...]] = {}
    for table, cells in combined.tables.items():
        if Dimension.JURISDICTION in table:
            tables[table] = cells
            continue
        parts = _parts_by_node(combined.tables, table)
        guarded = []
        for cell in cells:
            value = cell.count
            if parts is not None:
                value = _guard(value, parts.get(_key(cell), {}))
            if partial_reason is not None:
                value = _suppress(value, partial_reason)
            guarded.append(
                cell if value is cell.count else cell.model_copy(update={"count": value})
            )
        tables[table] = tuple(guarded)
    return dataclasses.replace(combined, count=count, tables=tables)


def _guard(pooled: Value, parts: Mapping[Jurisdiction, Value]) -> Value:
    """Suppress a released pooled value when a part shown next to it is withheld (never a
    value pooled securely)."""
    if pooled.value is None or any(r.rule == SECURE_POOL for r in pooled.reasons):
        return pooled
    withheld = [j for j, v in parts.items() if v.value is None]
    if not withheld:
        return pooled
    if len(withheld) == 1:
        reason = Reason(
            rule=ISOLATES_NODE,
            jurisdiction=withheld[0],
            message=f"with the other parts shown, this number would give away the withheld "
            f"part of {withheld[0].value}",
        )
    else:
        reason = Reason(
            rule=INCOMPLETE_POOL,
            message="with the other parts shown, this number would give away the sum of the "
            f"withheld parts of {', '.join(j.value for j in withheld)}",
        )
    return Value.suppressed(reason)


def _suppress(value: Value, reason: Reason) -> Value:
    if value.status is ValueStatus.SUPPRESSED:
        return value if reason in value.reasons else Value.suppressed(*value.reasons, reason)
    return Value.suppressed(reason)


def _key(cell: Cell, without: Dimension | None = None) -> _Key:
    return tuple(sorted((d.name, d.value) for d in cell.dimensions if d.name is not without))


def _parts_by_node(
    tables: Mapping[Breakdown, tuple[Cell, ...]], pooled: Breakdown
) -> dict[_Key, dict[Jurisdiction, Value]] | None:
    """Per pooled key, each node's part as shown in a table of the same dimensions plus
    JURISDICTION; None when the answer holds no such table (no part of a cell is shown)."""
    for table, cells in tables.items():
        rest = [d for d in table if d is not Dimension.JURISDICTION]
        if Dimension.JURISDICTION in table and sorted(rest) == sorted(pooled):
            parts: dict[_Key, dict[Jurisdiction, Value]] = {}
            for cell in cells:
                j = next(d.value for d in cell.dimensions if d.name is Dimension.JURISDICTION)
                key = _key(cell, without=Dimension.JURISDICTION)
                parts.setdefault(key, {})[Jurisdiction(j)] = cell.count
            return parts
    return None
