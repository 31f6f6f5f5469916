"""Disclosure control as a pipeline of small typed rules.

Two kinds of rule, both pure:

- a cell rule (`Rule`) takes a cell (a value about to be released, with its context) and
  returns the cell it allows to be released: unchanged, or with its value suppressed, rounded
  or perturbed, and a reason appended;
- a table rule (`TableRule`) takes every table released together (policies.tables.TableSet)
  and returns them with further cells suppressed: what one cell reveals depends on the others
  (a suppressed cell is the total minus the released ones).

A pipeline runs its cell rules on every cell, then its table rules on the whole set. The same
rules run at a node (its own profile, over raw counts, with cell keys) and at the gateway (the
strictest profile of a cell's contributing jurisdictions, over what the nodes released, with
the pooled and per-country values and every breakdown in one set).

Rules never log, and a reason never carries the value it explains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from policies.perturbation import perturbation_table
from policies.profiles import DisclosureProfile, ZeroHandling
from policies.secondary import secondary_suppression
from policies.tables import PRIMARY_SUPPRESSION, SECONDARY_SUPPRESSION, TableCell, TableSet
from schema.codes import Jurisdiction, ValueStatus
from schema.result import Reason, Value

__all__ = [
    "CELL_KEY_PERTURBATION",
    "GATEWAY_RULES",
    "GATEWAY_TABLE_RULES",
    "NODE_RULES",
    "NODE_TABLE_RULES",
    "NO_CELL_KEY",
    "PRIMARY_SUPPRESSION",
    "ROUNDING",
    "SECONDARY_SUPPRESSION",
    "CellContext",
    "Rule",
    "TableRule",
    "perturb",
    "primary_suppression",
    "protect",
    "protect_count",
    "protect_tables",
    "round_to_base",
    "secondary_suppression",
    "with_reason",
]

CELL_KEY_PERTURBATION = "CELL_KEY_PERTURBATION"
ROUNDING = "ROUNDING"
NO_CELL_KEY = "NO_CELL_KEY"


@dataclass(frozen=True, slots=True)
class CellContext:
    """What a rule may know about a cell besides its value."""

    profile: DisclosureProfile
    # The jurisdiction whose rule applies; None when several contribute (the gateway's pooled
    # cells): reasons then name no single jurisdiction.
    jurisdiction: Jurisdiction | None
    # The cell key (policies.perturbation), known at the node only.
    cell_key: int | None = None


Rule = Callable[[Value, CellContext], Value]
TableRule = Callable[[TableSet], TableSet]


def primary_suppression(value: Value, ctx: CellContext) -> Value:
    """Suppress a count below the profile's minimum (zero as the profile says)."""
    if value.value is None:
        return value
    n = value.value
    if n == 0 and ctx.profile.zero is ZeroHandling.RELEASE:
        return value
    if n >= ctx.profile.min_count:
        return value
    return Value(
        value=None,
        status=ValueStatus.SUPPRESSED,
        reasons=[
            *value.reasons,
            Reason(
                rule=PRIMARY_SUPPRESSION,
                jurisdiction=ctx.jurisdiction,
                message=f"count below the minimum of {ctx.profile.min_count}",
            ),
        ],
        # The comparison was made on a value this far from the truth at most.
        bound=value.bound,
    )


def perturb(value: Value, ctx: CellContext) -> Value:
    """Cell-key perturbation where the profile asks for it: the noise is a function of the
    count and the cell key only (policies.perturbation). Every perturbed cell says so, whether
    its noise happened to be zero or not."""
    profile = ctx.profile
    if not profile.perturbs or value.value is None or value.value == 0:
        return value
    if ctx.cell_key is None:
        # Fresh randomness would let averaging remove it: without a key, release nothing.
        return Value.suppressed(
            *value.reasons,
            Reason(
                rule=NO_CELL_KEY,
                jurisdiction=ctx.jurisdiction,
                message="perturbation is required and this cell has no cell key",
            ),
        )
    table = perturbation_table(
        profile.min_count, profile.perturbation_max_noise, profile.perturbation_variance
    )
    return Value(
        value=value.value + table.noise(value.value, ctx.cell_key),
        status=ValueStatus.PERTURBED,
        reasons=[
            *value.reasons,
            Reason(
                rule=CELL_KEY_PERTURBATION,
                jurisdiction=ctx.jurisdiction,
                message=f"consistent noise of at most ±{profile.perturbation_max_noise} "
                "added (cell-key method): the same persons always get the same number",
            ),
        ],
        bound=(value.bound or 0.0) + profile.perturbation_max_noise,
    )


def round_to_base(value: Value, ctx: CellContext) -> Value:
    """Round to a multiple of the profile's base: to the nearest (halves up), never below the
    smallest multiple that is at least the minimum count. Deterministic in the value."""
    base = ctx.profile.rounding_base
    if base == 1 or value.value is None or value.value == 0:
        return value
    n = value.value
    if n % base == 0 and value.status is not ValueStatus.EXACT:
        return value  # already protected to this base (a node's rounding, seen again)
    smallest = base * -(-ctx.profile.min_count // base)
    rounded = max(base * ((2 * n + base) // (2 * base)), smallest)
    # The same bound for every cell of the profile: a per-cell bound would tell whether the
    # clamp to the smallest multiple applied.
    bound = max(base / 2, smallest - ctx.profile.min_count)
    return Value(
        value=rounded,
        status=ValueStatus.PERTURBED
        if value.status is ValueStatus.PERTURBED
        else ValueStatus.ROUNDED,
        reasons=[
            *value.reasons,
            Reason(
                rule=ROUNDING,
                jurisdiction=ctx.jurisdiction,
                message=f"rounded to a multiple of {base}",
            ),
        ],
        bound=(value.bound or 0.0) + bound,
    )


NODE_RULES: tuple[Rule, ...] = (primary_suppression, perturb, round_to_base)
GATEWAY_RULES: tuple[Rule, ...] = (primary_suppression, round_to_base)
NODE_TABLE_RULES: tuple[TableRule, ...] = (secondary_suppression,)
GATEWAY_TABLE_RULES: tuple[TableRule, ...] = (secondary_suppression,)


def protect(value: Value, ctx: CellContext, rules: Sequence[Rule]) -> Value:
    for rule in rules:
        value = rule(value, ctx)
        if value.status is ValueStatus.SUPPRESSED:
            break
    return value


def protect_count(count: int, ctx: CellContext, rules: Sequence[Rule] = NODE_RULES) -> Value:
    """Protect a raw distinct-person count: the only way a node turns a count into a Value."""
    return protect(Value.exact(count), ctx, rules)


def protect_tables(
    tables: TableSet,
    rules: Sequence[Rule] = NODE_RULES,
    table_rules: Sequence[TableRule] = NODE_TABLE_RULES,
) -> TableSet:
    """The whole pipeline over tables released together: cell rules, then table rules."""

    def cell_rules(cell: TableCell) -> Value:
        return protect(
            cell.value, CellContext(cell.profile, cell.jurisdiction, cell.cell_key), rules
        )

    tables = tables.map_cells(cell_rules)
    for rule in table_rules:
        tables = rule(tables)
    return tables


def with_reason(value: Value, reason: Reason) -> Value:
    return value.model_copy(update={"reasons": [*value.reasons, reason]})
