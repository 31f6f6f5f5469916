"""Vetting a node's answer before it counts.

`gateway.nodes` already rejects what does not follow `tessera/1` (schema, sizes, the query
and tables asked). An answer can follow it and still be impossible or unsafe: a buggy or
hostile node may release a count its own rules forbid, send a key no connector produces, or
numbers that cannot be true together. Such an answer is REJECTED whole: nothing in it is
used, shown or logged, since a node wrong about one number cannot be trusted about the others.
The gateway's own disclosure control still runs on every answer that passes.

Checks are small typed callables run in order; the first problem found rejects the answer.
Messages say what was wrong, never the value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from gateway.combine import MAX_PERSONS, Profiles
from gateway.federation import NodeInfo
from gateway.nodes import CellKey, NodeClient, NodeOutcome
from policies.profiles import DisclosureProfile, ZeroHandling
from schema.codes import NodeStatus, ValueStatus
from schema.query import Breakdown
from schema.result import Value
from schema.wire import NodeRequest, valid_key_value

Tables = Mapping[Breakdown, Mapping[CellKey, Value]]
Check = Callable[[Tables, DisclosureProfile], str | None]


def _slack(value: Value) -> float:
    """How far a released value may lie from the truth: its bound; an exact value 0; an
    inexact one without a bound, any distance (the arithmetic checks then pass it)."""
    if value.bound is not None:
        return value.bound
    return 0.0 if value.status is ValueStatus.EXACT else math.inf


def _released(tables: Tables) -> list[Value]:
    return [v for cells in tables.values() for v in cells.values() if v.value is not None]


def keys_in_domain(tables: Tables, profile: DisclosureProfile) -> str | None:
    """Every key value is one a connector produces for its dimension (no JURISDICTION)."""
    for by, cells in tables.items():
        for key in cells:
            if not all(valid_key_value(d, v) for d, v in zip(by, key, strict=True)):
                return f"a cell of the table by {_name(by)} has a key no node produces"
    return None


def exact_values_are_exact(tables: Tables, profile: DisclosureProfile) -> str | None:
    for value in _released(tables):
        if value.status is ValueStatus.EXACT and value.bound not in (None, 0):
            return "an exact count carries an error bound"
    return None


def possible_counts(tables: Tables, profile: DisclosureProfile) -> str | None:
    for value in _released(tables):
        if value.value is not None and value.value - _slack(value) > MAX_PERSONS:
            return "a count is larger than any population"
    return None


def at_least_published_minimum(tables: Tables, profile: DisclosureProfile) -> str | None:
    """No released count below the node's own published minimum (nor a zero its rules
    suppress): the node broke its own disclosure rules, so none of its numbers are safe."""
    for value in _released(tables):
        n = value.value
        assert n is not None
        if n == 0 and value.status is ValueStatus.EXACT:
            if profile.zero is ZeroHandling.SUPPRESS:
                return "a zero count was released by a node whose rules suppress zeros"
            continue
        if n + _slack(value) < profile.min_count:
            return f"a count below the node's published minimum of {profile.min_count}"
    return None


def cells_within_total(tables: Tables, profile: DisclosureProfile) -> str | None:
    """Every node table partitions the cohort (each person in exactly one cell, UNKNOWN
    included), so neither one cell nor the released cells together exceed the total."""
    total = tables.get((), {}).get(())
    if total is None or total.value is None:
        return None
    ceiling = total.value + _slack(total)
    for by, cells in tables.items():
        released = [v for v in cells.values() if v.value is not None]
        floor = sum((v.value or 0) - _slack(v) for v in released)
        if by and floor > ceiling:
            return f"the cells of the table by {_name(by)} add up to more than the total"
    return None


CHECKS: Final[tuple[Check, ...]] = (
    keys_in_domain,
    exact_values_are_exact,
    possible_counts,
    at_least_published_minimum,
    cells_within_total,
)


def vet(
    outcome: NodeOutcome, profile: DisclosureProfile, checks: Sequence[Check] = CHECKS
) -> NodeOutcome:
    """The outcome if an OK answer passes every check (or it is not OK); otherwise REJECTED,
    keeping nothing of the answer but its latency."""
    if outcome.status is not NodeStatus.OK:
        return outcome
    for check in checks:
        problem = check(outcome.tables, profile)
        if problem is not None:
            return NodeOutcome.failed(
                outcome.jurisdiction,
                NodeStatus.REJECTED,
                f"implausible answer: {problem}",
                latency_ms=outcome.latency_ms,
            )
    return outcome


class VettingNodeClient:
    """A `NodeClient` that vets every answer of `inner` against the node's published
    disclosure profile (`profiles`, by the node's jurisdiction)."""

    def __init__(self, inner: NodeClient, profiles: Profiles) -> None:
        self._inner = inner
        self._profiles = profiles

    async def query(
        self,
        node: NodeInfo,
        request: NodeRequest,
        *,
        approval_token: str,
        timeout: float,  # noqa: ASYNC109 - the transport's budget; the fan-out also bounds it
    ) -> NodeOutcome:
        outcome = await self._inner.query(
            node, request, approval_token=approval_token, timeout=timeout
        )
        return vet(outcome, self._profiles(node.jurisdiction))


def _name(by: Breakdown) -> str:
    return ", ".join(d.value for d in by)
