"""Vetting a node's answer before it counts.

`gateway.nodes` already rejects what does not follow `tessera/1` (schema, sizes, the query
and tables asked). An answer can follow it and still be impossible or unsafe: a buggy or
hostile node may release a count its own rules forbid, leave out the noise its jurisdiction
publishes, list other cells than a table's public domain, send a key no connector produces,
or numbers that cannot be true together. Such an answer is REJECTED whole: nothing in it is
used, shown or logged, since a node wrong about one number cannot be trusted about the
others.

Checks are small typed callables run in order; the first problem found rejects the answer.
Messages say what was wrong, never the value.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Final, NamedTuple

from gateway.combine import Profiles
from gateway.federation import NodeInfo
from gateway.nodes import CellKey, NodeClient, NodeOutcome
from gateway.rate_vetting import rate_cells
from policies.domain import dimension_domain
from policies.profiles import DisclosureProfile
from schema.codes import WITHHELD, MeasureKind, NodeStatus, ValueStatus
from schema.measures import MEASURES, MeasureSpec
from schema.query import Breakdown
from schema.result import Value
from schema.wire import KEY_DOMAINS, NodeRequest

Tables = Mapping[Breakdown, Mapping[CellKey, Value]]


class AnswerToVet:
    """One measure's values in a node's OK answer with what they are checked against: the
    node's published profile, the question it was asked and the measure's spec. Every check
    runs on every measure asked (each one's values are released noisy, under its rules).

    What several checks read (the released values, each table's key values per dimension)
    is gathered once per answer, on first use: every check reads every cell of every answer,
    so each pass over them counts."""

    def __init__(
        self,
        tables: Tables,
        profile: DisclosureProfile,
        request: NodeRequest,
        measure: MeasureSpec,
    ) -> None:
        self.tables = tables
        self.profile = profile
        self.request = request
        self.measure = measure

    @functools.cached_property
    def kinds(self) -> set[ValueKind]:
        """Every distinct kind of value in the answer: an honest node's are two or three
        (released with its noise's sd, LOW with it)."""
        # Plain tuples first: a named tuple per value would cost more than the set.
        distinct = {
            (v.status, v.sd, v.contributors is not None)
            for cells in self.tables.values()
            for v in cells.values()
        }
        return {ValueKind(*kind) for kind in distinct}

    @functools.cached_property
    def numbers(self) -> dict[Breakdown, list[int]]:
        """Each table's released numbers."""
        return {
            by: [n for v in cells.values() if (n := v.value) is not None]
            for by, cells in self.tables.items()
        }

    def released(self, by: Breakdown | None = None) -> list[Value]:
        """The released values of one table, or of all (for the checks' rare slow paths)."""
        return [
            v
            for table, cells in self.tables.items()
            if by is None or table == by
            for v in cells.values()
            if v.value is not None
        ]

    @functools.cached_property
    def key_values(self) -> dict[Breakdown, list[set[str]]]:
        """Each table's distinct key values, per dimension (a column of its keys)."""
        return {
            by: [set(column) for column in zip(*cells, strict=True)] or [set() for _ in by]
            for by, cells in self.tables.items()
            if by
        }


class ValueKind(NamedTuple):
    """What the checks ask of a value beyond its number."""

    status: ValueStatus
    sd: float | None
    pooled: bool  # it names contributors

    @property
    def released(self) -> bool:
        return self.status not in WITHHELD


Check = Callable[[AnswerToVet], str | None]

# How many standard deviations of its noise a released count may lie from the truth before
# the arithmetic checks call it impossible: about one honest answer in 10^9 would fail.
_NOISE_SLACK_SDS: Final = 6.0


def _slack(value: Value) -> float:
    """How far a released value may lie from the truth: its bound plus six sds of its noise;
    an exact value 0; an inexact one with neither, any distance (the arithmetic checks then
    pass it)."""
    if value.bound is None and value.sd is None:
        return 0.0 if value.status is ValueStatus.EXACT else math.inf
    return (value.bound or 0.0) + _NOISE_SLACK_SDS * (value.sd or 0.0)


def keys_in_domain(answer: AnswerToVet) -> str | None:
    """Every key value is one a connector produces for its dimension (no JURISDICTION)."""
    for by, columns in answer.key_values.items():
        for dimension, values in zip(by, columns, strict=True):
            if not values <= KEY_DOMAINS[dimension]:
                return f"a cell of the table by {_name(by)} has a key no node produces"
    return None


def full_domain(answer: AnswerToVet) -> str | None:
    """Every table lists exactly the cells of its public domain: a node that leaves a cell
    out, or adds one, tells which groups exist."""
    query = answer.request.query
    for by, columns in answer.key_values.items():
        domains = [frozenset(dimension_domain(d, query)) for d in by]
        # Cell keys are distinct, so they are the domain's (the product of the dimensions'
        # domains) exactly when there are as many and each of their values is in its
        # dimension's domain: no need to list the product.
        if len(answer.tables[by]) != math.prod(len(domain) for domain in domains) or not all(
            values <= domain for values, domain in zip(columns, domains, strict=True)
        ):
            return f"the table by {_name(by)} does not list exactly its public cells"
    return None


def noisy_as_published(answer: AnswerToVet) -> str | None:
    """Every count is noisy, with at least the node's published noise, or LOW: an exact
    count never leaves a node. A sum's noise is at least the published sd times its
    sensitivity (`schema.measures`); a sum may also be SUPPRESSED (by a magnitude rule)."""
    sd = answer.profile.noise_sd(answer.request.noise) * answer.measure.sensitivity(
        answer.request.query
    )
    for kind in answer.kinds:
        if kind.status is ValueStatus.LOW:
            continue
        if kind.status is ValueStatus.SUPPRESSED and not answer.measure.count:
            # A magnitude a node's rule withheld (days at risk: `policies.person_time`).
            continue
        if kind.status is not ValueStatus.PERTURBED or kind.sd is None:
            return "a count was released without noise"
        if kind.sd < sd * (1 - 1e-9):
            return f"a count carries less noise than the node's published sd of {sd:g}"
    return None


def possible_counts(answer: AnswerToVet) -> str | None:
    most = answer.measure.maximum
    # A slack is never negative: only a count above the bound needs its slack.
    if max(map(_largest, answer.numbers.values()), default=0) <= most:
        return None
    for value in answer.released():
        n = value.value
        if n is not None and n > most and n - _slack(value) > most:
            return "a count is larger than any population"
    return None


def at_least_published_minimum(answer: AnswerToVet) -> str | None:
    """No released count below the node's own published minimum (a noisy count below it is
    LOW): the node broke its own disclosure rules, so none of its numbers are safe. (Counts
    only: a sum has no minimum.)"""
    if not answer.measure.count:
        return None
    minimum = answer.profile.min_count
    if min((min(ns) for ns in answer.numbers.values() if ns), default=minimum) < minimum:
        return f"a count below the node's published minimum of {minimum}"
    return None


def own_counts_only(answer: AnswerToVet) -> str | None:
    """A node's counts are its own: only the gateway says a count pools several countries."""
    if any(kind.pooled for kind in answer.kinds):
        return "a count claims to pool several countries"
    return None


def tables_as_asked(answer: AnswerToVet) -> str | None:
    """Exactly the tables the node was asked to release on its own: a total (or any table)
    sent though it was asked only as pooled shares is rejected, not used, and a missing one
    does not pass as "nothing to check against"."""
    if set(answer.tables) != set(answer.request.national_tables):
        return "the answer's tables differ from those asked"
    return None


def cells_within_total(answer: AnswerToVet) -> str | None:
    """Every node table partitions the cohort (each person in at most one cell), so no cell
    exceeds the total beyond their noise, and cells without noise (exact or rounded) do not
    together. Noisy cells together may: only the cells whose noise lifted them to the minimum
    are released, so in a sparse table the released ones lean upwards, and their sum can pass
    an honest total by far more than the noise's spread.

    A node of a pooled round asked for no total of its own (`gateway.pooling.national_total`)
    has none to check against: its cells are then held to the other checks (each one
    possible, noisy as published, at least the minimum), and the pooled count to
    `gateway.rounds`' plausibility check. A total asked and withheld (LOW) is no bound
    either. (Counts only: sums are bounded by their counts, `linked_sums`.)"""
    if not answer.measure.count:
        return None
    tables = answer.tables
    total = tables.get((), {}).get(())
    if total is None or total.value is None:
        return None
    total_slack = _slack(total)
    # Cells without noise, which must not together exceed the total: none in an honest answer.
    exact = any(kind.released and kind.sd is None for kind in answer.kinds)
    for by, numbers in answer.numbers.items():
        if not by:
            continue
        # A slack is never negative: only a cell above the total needs the slacks.
        if _largest(numbers) > total.value:
            for value in answer.released(by):
                n = value.value or 0
                if n > total.value and n > total.value + math.hypot(_slack(value), total_slack):
                    return f"a cell of the table by {_name(by)} is larger than the total"
        if exact:
            floor = sum((v.value or 0) - _slack(v) for v in answer.released(by) if v.sd is None)
            if floor > total.value + total_slack:
                return f"the cells of the table by {_name(by)} add up to more than the total"
    return None


def _largest(numbers: list[int]) -> int:
    return max(numbers, default=0)


CHECKS: Final[tuple[Check, ...]] = (
    tables_as_asked,
    keys_in_domain,
    full_domain,
    noisy_as_published,
    possible_counts,
    at_least_published_minimum,
    own_counts_only,
    cells_within_total,
)


_SUMS: Final = (MeasureKind.VALUE_SUM, MeasureKind.VALUE_SUM_SQUARES)


def linked_sums(measures: Mapping[MeasureKind, Tables]) -> str | None:
    """A variable's sums are withheld exactly where the cell's count of persons with a value
    (VALUE_N) is: a sum released beside a LOW count would give a mean over fewer persons than
    the minimum, and a sum withheld beside a released count says something the count did
    not."""
    counts = measures.get(MeasureKind.VALUE_N)
    if counts is None:
        return None
    for kind in _SUMS:
        for by, cells in measures.get(kind, {}).items():
            of_table = counts.get(by, {})
            for key, value in cells.items():
                n = of_table.get(key)
                if n is None or n.withheld != value.withheld:
                    return f"a {kind.value} is not withheld exactly where its count is"
    return None


def vet(
    outcome: NodeOutcome,
    profile: DisclosureProfile,
    request: NodeRequest,
    checks: Sequence[Check] = CHECKS,
) -> NodeOutcome:
    """The outcome if an OK answer passes every check (or it is not OK); otherwise REJECTED,
    keeping nothing of the answer but its latency."""
    if outcome.status is not NodeStatus.OK:
        return outcome
    for kind, tables in outcome.measures.items():
        problem = _problem(AnswerToVet(tables, profile, request, MEASURES[kind]), checks)
        if problem is not None:
            return NodeOutcome.failed(
                outcome.jurisdiction,
                NodeStatus.REJECTED,
                f"implausible answer: {problem}",
                latency_ms=outcome.latency_ms,
            )
    problem = linked_sums(outcome.measures) or rate_cells(outcome.measures, profile, request.query)
    if problem is not None:
        return NodeOutcome.failed(
            outcome.jurisdiction,
            NodeStatus.REJECTED,
            f"implausible answer: {problem}",
            latency_ms=outcome.latency_ms,
        )
    return outcome


def _problem(answer: AnswerToVet, checks: Sequence[Check]) -> str | None:
    for check in checks:
        problem = check(answer)
        if problem is not None:
            return problem
    return None


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
        return vet(outcome, self._profiles(node.jurisdiction), request)


def _name(by: Breakdown) -> str:
    return ", ".join(d.value for d in by)
