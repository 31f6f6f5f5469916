"""Combining node answers: per-node counts, the pooled total and every breakdown table.
Pure functions, no I/O. `combine` combines one measure's values (`schema.measures`; a count
of persons unless told otherwise): its parts pool as the measure's spec says (counts add up,
and no pooled value may exceed the measure's maximum), under the measure's gateway rules
(`policies.measures`). What follows is said of counts.

Each node's cells are first checked with that node's own profile, as if released alone (an
honest node's cells pass unchanged). A pooled cell is the sum of the cell over the nodes that
answered OK, each part as its node released it, noise included (so the pooled noise's sd is
the root of the parts' variances); it is then checked against the strictest rules of the
jurisdictions in it. If any part was withheld (LOW, or missing), the pooled cell is
withheld too (INCOMPLETE_POOL): the pool minus the released parts would give the withheld one
away.

A table pooled securely (`gateway.pooling`) takes its participants' part from the pool
instead: one noisy count of the whole, in which no country's own count, withheld or not, was
ever seen. When that table is the total and the question did not ask each country's own count,
the participants released none: their per-node count is null with reason NOT_ASKED. A
participant's national number withheld next to it (LOW) stays withheld, and gives nothing
away: the pool's noise is drawn independently of it. Nodes outside the pool add their released
parts as above. The cell is checked against the strictest rules of all its jurisdictions, says
it was pooled securely (SECURE_POOL) and lists its `contributors`.

Nothing here suppresses a cell because of what else is released: every released number is
noisy, so no subtraction or linear program recovers a withheld one exactly, and a question's
numbers do not depend on what else it asks.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from gateway.nodes import CellKey, NodeOutcome
from gateway.pooling import SECURE_POOL, Pooling
from policies.disclosure import CellContext, protect, with_reason
from policies.measures import PROTECTIONS
from policies.profiles import DisclosureProfile, strictest
from schema.codes import Dimension, Jurisdiction, MeasureKind, NodeStatus, ValueStatus
from schema.dimensions import DIMENSIONS
from schema.measures import MEASURES, Pool
from schema.query import Breakdown
from schema.result import Cell, DimensionValue, Quantiles, Rate, Reason, Summary, Value
from schema.survival_result import LogRank, SurvivalCurve
from schema.wire import PrivacySpend, UnknownCode, node_dimensions

INCOMPLETE_POOL: Final = "INCOMPLETE_POOL"
IMPLAUSIBLE_POOL: Final = "IMPLAUSIBLE_POOL"
COUNT: Final = MeasureKind.PERSON_COUNT
PARTIAL: Final = "PARTIAL"
NO_NODE_ANSWERED: Final = "NO_NODE_ANSWERED"
# A country's own count the question did not ask (it asked only the securely pooled count).
NOT_ASKED: Final = "NOT_ASKED"

# From most to least exact: a pooled value is as inexact as its least exact part.
# Statuses of a node that answered (with counts, or why not), as opposed to one that failed.
ANSWERS: Final = frozenset({NodeStatus.OK, NodeStatus.DENIED, NodeStatus.UNKNOWN_CODE})
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
    privacy: PrivacySpend | None = None
    unknown_codes: tuple[UnknownCode, ...] = ()
    vocabularies: tuple[str, ...] = ()
    # The question's numeric variable over the node's cohort (`gateway.statistics`).
    summary: Summary | None = None
    # The question's incidence rate over the node's cohort (`gateway.rates`).
    rate: Rate | None = None


@dataclass(frozen=True, slots=True)
class Combined:
    count: Value
    by_jurisdiction: tuple[NodeResult, ...]
    tables: Mapping[Breakdown, tuple[Cell, ...]]
    # The question's numeric variable, pooled over the nodes (`gateway.statistics`).
    summary: Summary | None = None
    # The quartiles of each histogram (a table by VALUE_BIN), per group of its other cells.
    quantiles: Mapping[Breakdown, tuple[Quantiles, ...]] = field(default_factory=dict)
    # The question's incidence rate, pooled over the nodes (`gateway.rates`).
    rate: Rate | None = None
    # A survival question's curves (each group's, per country and pooled) and log-rank tests
    # (`gateway.survival`).
    survival: tuple[SurvivalCurve, ...] = ()
    log_rank: tuple[LogRank, ...] = ()


def combine(
    tables: Sequence[Breakdown],
    outcomes: Sequence[NodeOutcome],
    profiles: Profiles,
    pooling: Pooling | None = None,
    measure: MeasureKind = COUNT,
) -> Combined:
    """The answer in one measure's values (a count of persons unless said), pooled as the
    measure pools (`schema.measures`), under its gateway rules (`policies.measures`)."""
    ok = [o for o in outcomes if o.status is NodeStatus.OK]
    # Each node's cells, checked with its own profile as if released alone: once, then shared
    # by the per-node values, the pooled cells and the per-country cells.
    parts = {o.jurisdiction: released_alone(o, profiles, measure) for o in ok}
    pooled_context = _context([o.jurisdiction for o in ok], profiles)
    return Combined(
        count=pooled_total(outcomes, parts, pooled_context, pooling, measure),
        by_jurisdiction=tuple(node_result(o, parts) for o in outcomes),
        tables={
            table: combine_table(table, parts, pooled_context, pooling, measure) for table in tables
        },
    )


NodeTables = Mapping[Breakdown, Mapping[CellKey, Value]]


def released_alone(
    outcome: NodeOutcome, profiles: Profiles, measure: MeasureKind = COUNT
) -> NodeTables:
    """A node's cells of `measure` under the gateway's cell rules with the node's own
    profile."""
    context = _context([outcome.jurisdiction], profiles)
    protection = PROTECTIONS[measure]
    rules = protection.gateway_rules
    settled = protection.gateway_settled_from(context)
    if settled is None:
        return {
            table: {key: protect(value, context, rules) for key, value in cells.items()}
            for table, cells in outcome.measures[measure].items()
        }
    # Values the rules leave as they are pass without a call per rule (every cell of every
    # node's answer comes through here), and a table of only such values as it is.
    return {
        table: cells
        if not [v for v in cells.values() if (n := v.value) is not None and n < settled]
        else {key: protect(value, context, rules) for key, value in cells.items()}
        for table, cells in outcome.measures[measure].items()
    }


def node_result(outcome: NodeOutcome, parts: Mapping[Jurisdiction, NodeTables]) -> NodeResult:
    count = None
    reasons = outcome.reasons
    response = outcome.response
    if outcome.status is NodeStatus.OK:
        total = parts[outcome.jurisdiction].get(())
        if total is None:
            # A participant of a completed pooled round, in a question that asked only the
            # pooled count: it released no count of its own (null: not asked, never LOW).
            reasons = (*reasons, _NOT_ASKED)
        else:
            count = total[()]
    error = None
    if outcome.status not in ANSWERS:
        error = outcome.message or outcome.status.value
        if outcome.error_code is not None:
            error = f"{outcome.error_code.value}: {error}"
    return NodeResult(
        jurisdiction=outcome.jurisdiction,
        status=outcome.status,
        latency_ms=outcome.latency_ms,
        count=count,
        reasons=reasons,
        error=error,
        privacy=None if outcome.response is None else outcome.response.privacy,
        unknown_codes=() if response is None else tuple(response.unknown_codes),
        vocabularies=() if response is None else tuple(response.vocabularies),
    )


def pooled_total(
    outcomes: Sequence[NodeOutcome],
    parts: Mapping[Jurisdiction, NodeTables],
    context: CellContext,
    pooling: Pooling | None = None,
    measure: MeasureKind = COUNT,
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
    if pooling is not None and () in pooling.tables:
        total = secure_cell((), (), parts, pooling, context, measure)
    else:
        total = protect(
            # Every node has its total here (only a pooled total is ever left out); one that
            # had none would make the sum incomplete, never smaller.
            pool(
                [(j, tables.get((), {}).get((), _MISSING)) for j, tables in parts.items()],
                measure,
            ),
            context,
            PROTECTIONS[measure].gateway_rules,
        )
    if missing:
        total = with_reason(total, Reason(rule=PARTIAL, message=f"no answer from {missing}"))
    return total


def combine_table(
    table: Breakdown,
    parts: Mapping[Jurisdiction, NodeTables],
    pooled: CellContext,
    pooling: Pooling | None = None,
    measure: MeasureKind = COUNT,
) -> tuple[Cell, ...]:
    node_table = node_dimensions(table)
    cells: list[tuple[CellKey, Value]] = []
    if pooling is not None and Dimension.JURISDICTION not in table and table in pooling.tables:
        for key in pooling.domains[table]:
            cells.append((key, secure_cell(table, key, parts, pooling, pooled, measure)))
    elif Dimension.JURISDICTION in table:
        # Each cell comes from one node: protected with that node's own profile.
        for j, tables in parts.items():
            for key, value in tables[node_table].items():
                cells.append((_with_jurisdiction(table, key, j), value))
    else:
        cells = pooled_cells(
            list(parts), [tables[node_table] for tables in parts.values()], pooled, measure
        )
    layout = _layout(table, tuple([key for key, _ in cells]))
    values = [value for _, value in cells]
    return tuple(
        Cell.trusted_each(
            {"dimensions": list(dimensions), "count": values[i], "summary": None, "rate": None}
            for i, dimensions in layout
        )
    )


def pooled_cells(
    contributors: Sequence[Jurisdiction],
    node_cells: Sequence[Mapping[CellKey, Value]],
    context: CellContext,
    measure: MeasureKind = COUNT,
) -> list[tuple[CellKey, Value]]:
    """Each cell of a table pooled over the nodes (`node_cells`, in `contributors`' order),
    under the measure's gateway rules in the pooled context."""
    keys = list(node_cells[0]) if node_cells else []
    if not all(list(of_node) == keys for of_node in node_cells[1:]):
        # Every node lists every cell of the table's public domain; a cell one did not list
        # is a part nobody released.
        keys = list(dict.fromkeys(key for of_node in node_cells for key in of_node))
        node_cells = [{key: of_node.get(key, _MISSING) for key in keys} for of_node in node_cells]
    # Every node now lists the same cells in the same order (as honest nodes do: their
    # table's public domain), so each cell's parts are a row of the nodes' columns, and which
    # of them were withheld a bit per node: this runs for every cell of every pooled table.
    columns = [list(of_node.values()) for of_node in node_cells]
    numbers = [[v.value for v in column] for column in columns]
    withheld = [
        sum(bits)
        for bits in zip(
            *[[1 << i if n is None else 0 for n in column] for i, column in enumerate(numbers)],
            strict=True,
        )
    ]
    released = _released_pools(columns, numbers, withheld, measure)
    incomplete: dict[int, Value] = {}
    protection = PROTECTIONS[measure]
    rules = protection.gateway_rules
    settled = protection.gateway_settled_from(context)
    cells = []
    for i, (key, mask, row) in enumerate(
        zip(keys, withheld, zip(*columns, strict=True), strict=True)
    ):
        value = incomplete.get(mask) if mask else released[i]
        if value is None:
            value = _pool(contributors, row, measure)
            if mask:
                # The same for every cell the same nodes withheld.
                incomplete[mask] = value
        # Values the rules leave as they are (withheld, or at least `settled`) pass without
        # a call per rule.
        if settled is None or ((n := value.value) is not None and n < settled):
            value = protect(value, context, rules)
        cells.append((key, value))
    return cells


def _released_pools(
    columns: Sequence[Sequence[Value]],
    numbers: Sequence[Sequence[int | None]],
    withheld: Sequence[int],
    measure: MeasureKind,
) -> list[Value | None]:
    """Each released row's pooled value (None for a row `_pool` must make: one with a part
    withheld, or beyond the measure's maximum), column by column when the nodes' values are
    all alike but for their numbers and sds, as honest nodes' noisy cells are: one status, no
    reasons, no bound, an sd. The same values `_pool` makes of each row, without its pass
    over each row's parts per field: this runs for every cell of every pooled table."""
    spec = MEASURES[measure]
    if not columns or spec.pool is not Pool.SUM:
        return [None] * len(withheld)
    status = next((v.status for column in columns for v in column if v.value is not None), None)
    variances: list[list[float]] = []
    for column, of_node in zip(columns, numbers, strict=True):
        of_column = []
        for v, n in zip(column, of_node, strict=True):
            if n is None:  # a withheld part: its row is `_pool`'s
                of_column.append(0.0)
                continue
            sd = v.sd
            if sd is None or v.reasons or v.bound is not None or v.status is not status:
                return [None] * len(withheld)
            of_column.append(sd * sd)
        variances.append(of_column)
    maximum = spec.maximum
    pooled: list[Value | None] = []
    for mask, parts, row_variances in zip(
        withheld, zip(*numbers, strict=True), zip(*variances, strict=True), strict=True
    ):
        if mask:
            pooled.append(None)
            continue
        total = sum(parts)  # no None: a row none withheld
        if total > maximum:
            pooled.append(None)
            continue
        pooled.append(
            Value.trusted(
                value=total,
                status=status,
                reasons=[],
                bound=None,
                sd=math.sqrt(sum(row_variances)),
                contributors=None,
            )
        )
    return pooled


# Where each cell of a table goes and what its dimensions say: the cells' order is each
# dimension's own (`schema.dimensions`), made once per table and set of keys (a question's
# tables are the public domains of a few dimensions, asked again and again) and shared.
Layout = tuple[tuple[int, tuple[DimensionValue, ...]], ...]


@functools.lru_cache(maxsize=512)
def _layout(table: Breakdown, keys: tuple[CellKey, ...]) -> Layout:
    orders = [DIMENSIONS[d].sort_key for d in table]
    ranked = sorted(range(len(keys)), key=lambda i: tuple(map(operator.call, orders, keys[i])))
    columns = [(d, _dimension_values(d)) for d in table]
    return tuple(
        (i, tuple(_dimension(c, v) for c, v in zip(columns, keys[i], strict=True))) for i in ranked
    )


Column = tuple[Dimension, dict[str, DimensionValue]]
# Each dimension's values, made once and shared by every cell that has them (values are
# immutable; keys come from vetted answers, so there are at most a few thousand).
_DIMENSION_VALUES: Final[dict[Dimension, dict[str, DimensionValue]]] = {d: {} for d in Dimension}


def _dimension_values(name: Dimension) -> dict[str, DimensionValue]:
    return _DIMENSION_VALUES[name]


def _dimension(column: Column, value: str) -> DimensionValue:
    name, made = column
    made_value = made.get(value)
    if made_value is None:
        made_value = DimensionValue.trusted(name=name, value=value)
        if len(made) < _MAX_DIMENSION_VALUES:
            made[value] = made_value
    return made_value


_MAX_DIMENSION_VALUES: Final = 4096


def pool(parts: Sequence[tuple[Jurisdiction, Value]], measure: MeasureKind = COUNT) -> Value:
    """The released parts pooled as the measure pools (a count: their sum); suppressed when
    any part was not released, or when the pooled value is beyond the measure's maximum (for
    a count, more persons than exist)."""
    return _pool([j for j, _ in parts], [v for _, v in parts], measure)


def _pool(
    contributors: Sequence[Jurisdiction], values: Sequence[Value], measure: MeasureKind = COUNT
) -> Value:
    """`pool` of each contributor's value, in the same order (this runs for every pooled
    cell: built-ins over lists, no generators)."""
    numbers = [v.value for v in values]
    if None in numbers:
        withheld = [j for j, n in zip(contributors, numbers, strict=True) if n is None]
        return _incomplete(tuple(withheld))
    spec = MEASURES[measure]
    total = spec.pooled(numbers)  # type: ignore[arg-type] # no None, as just checked
    if total > spec.maximum:
        # Each part passed vetting on its own; together they describe more persons than
        # exist, so at least one is false, and no one can tell which.
        return Value.suppressed(
            Reason(
                rule=IMPLAUSIBLE_POOL,
                message="the countries' counts add up to more persons than live in Europe",
            )
        )
    bounds = [v.bound for v in values if v.bound is not None]
    variances = [v.sd * v.sd for v in values if v.sd is not None]
    statuses = {v.status for v in values}
    # Made of released parts (each valid, none withheld): a count of at least zero, the
    # least exact of their statuses, their reasons and their summed bounds and variances.
    return Value.trusted(
        value=total,
        status=statuses.pop()
        if len(statuses) == 1
        else max(statuses, key=_EXACTNESS.index, default=ValueStatus.EXACT),
        reasons=list(dict.fromkeys(r for v in values for r in v.reasons)),
        bound=sum(bounds) if bounds else None,
        sd=math.sqrt(sum(variances)) if variances else None,
        contributors=None,
    )


def secure_cell(
    table: Breakdown,
    key: CellKey,
    parts: Mapping[Jurisdiction, NodeTables],
    pooling: Pooling,
    context: CellContext,
    measure: MeasureKind = COUNT,
) -> Value:
    """A cell of a table pooled securely (of the one measure a round pools): the pool's count
    plus the released parts of the nodes outside it, checked with the strictest rules of all
    of them (`context`). Withheld when the pool did not complete, or a part outside it was
    withheld."""
    secure = pooling.pool
    inside = () if secure is None else secure.contributors
    outside = [(j, tables.get(table)) for j, tables in parts.items() if j not in inside]
    if any(cells is None for _, cells in outside):
        # A participant of a round that did not complete: it released this table to nobody.
        return Value.suppressed(pooling.failure or _MISSING.reasons[0])
    national = [(j, cells.get(key, _MISSING)) for j, cells in outside if cells is not None]
    spec, rules = MEASURES[measure], PROTECTIONS[measure].gateway_rules
    if secure is None:
        value = protect(pool(national, measure), context, rules)
        if value.value is None and pooling.failure is not None:
            value = with_reason(value, pooling.failure)
        return value
    withheld = [j for j, v in national if v.value is None]
    if withheld:
        return pool(national, measure)  # INCOMPLETE_POOL, naming the parts withheld
    raw = spec.pooled([secure.cells[table][key], *(v.value or 0 for _, v in national)])
    if raw > spec.maximum:
        return Value.suppressed(
            Reason(rule=IMPLAUSIBLE_POOL, message="the pooled count is more persons than exist")
        )
    variance = secure.sigma**2 + sum((v.sd or 0.0) ** 2 for _, v in national)
    value = protect(PROTECTIONS[measure].release(raw, math.sqrt(variance), context), context, rules)
    contributors = sorted({*inside, *parts}, key=_JURISDICTION_INDEX.__getitem__)
    names = ", ".join(j.value for j in inside)
    reason = Reason(
        rule=SECURE_POOL,
        message=f"pooled securely over {names}: only the sum of their noisy shares was seen",
    )
    return value.model_copy(
        update={
            "reasons": [
                *value.reasons,
                *dict.fromkeys(r for _, v in national for r in v.reasons),
                reason,
            ],
            "contributors": contributors,
        }
    )


# The same for every pooled cell withheld by the same jurisdictions: made once, shared.
@functools.lru_cache(maxsize=1024)
def _incomplete(withheld: tuple[Jurisdiction, ...]) -> Value:
    return Value.suppressed(
        Reason(
            rule=INCOMPLETE_POOL,
            jurisdiction=withheld[0] if len(withheld) == 1 else None,
            message=f"not released by {', '.join(j.value for j in withheld)}; pooling "
            "withheld counts needs secure aggregation",
        )
    )


def _context(contributors: Sequence[Jurisdiction], profiles: Profiles) -> CellContext:
    """The gateway's disclosure context for a cell of these jurisdictions: the strictest of
    their profiles; reasons name a jurisdiction only when there is one."""
    return CellContext(
        profile=strictest(profiles(j) for j in contributors),
        jurisdiction=contributors[0] if len(contributors) == 1 else None,
    )


_NOT_ASKED: Final = Reason(
    rule=NOT_ASKED,
    message="this country's own count was not asked: the question asked only the count "
    "pooled securely, released once",
)
_MISSING: Final = Value.suppressed(
    Reason(rule="MISSING_CELL", message="the node listed no value for this cell")
)


def _with_jurisdiction(table: Breakdown, key: CellKey, jurisdiction: Jurisdiction) -> CellKey:
    values = iter(key)
    return tuple(jurisdiction.value if d is Dimension.JURISDICTION else next(values) for d in table)


_JURISDICTION_INDEX: Final = {j: i for i, j in enumerate(Jurisdiction)}
