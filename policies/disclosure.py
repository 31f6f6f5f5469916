"""Disclosure control as a pipeline of small typed rules.

A rule takes a cell (a value about to be released, with its context) and returns the cell it
allows to be released: unchanged, or with its value suppressed, rounded or perturbed, and a
reason appended. Rules are pure; the same pipeline runs at a node (its own profile, over raw
counts) and at the gateway (the strictest profile of a cell's contributing jurisdictions, over
what the nodes released).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from policies.profiles import DisclosureProfile, ZeroHandling
from schema.codes import Jurisdiction, ValueStatus
from schema.result import Reason, Value

PRIMARY_SUPPRESSION = "PRIMARY_SUPPRESSION"


@dataclass(frozen=True, slots=True)
class CellContext:
    """What a rule may know about a cell besides its value."""

    profile: DisclosureProfile
    # The jurisdiction whose rule applies; None when several contribute (the gateway's pooled
    # cells): reasons then name no single jurisdiction.
    jurisdiction: Jurisdiction | None


Rule = Callable[[Value, CellContext], Value]


def primary_suppression(value: Value, ctx: CellContext) -> Value:
    """Suppress a count below the profile's minimum (zero as the profile says)."""
    if value.value is None:
        return value
    n = value.value
    if n == 0 and ctx.profile.zero is ZeroHandling.RELEASE:
        return value
    if n >= ctx.profile.min_count:
        return value
    return Value.suppressed(
        *value.reasons,
        Reason(
            rule=PRIMARY_SUPPRESSION,
            jurisdiction=ctx.jurisdiction,
            message=f"count below the minimum of {ctx.profile.min_count}",
        ),
    )


NODE_RULES: tuple[Rule, ...] = (primary_suppression,)
GATEWAY_RULES: tuple[Rule, ...] = (primary_suppression,)


def protect(value: Value, ctx: CellContext, rules: Sequence[Rule]) -> Value:
    for rule in rules:
        value = rule(value, ctx)
        if value.status is ValueStatus.SUPPRESSED:
            break
    return value


def protect_count(count: int, ctx: CellContext, rules: Sequence[Rule] = NODE_RULES) -> Value:
    """Protect a raw distinct-person count: the only way a node turns a count into a Value."""
    return protect(Value.exact(count), ctx, rules)


def with_reason(value: Value, reason: Reason) -> Value:
    return value.model_copy(update={"reasons": [*value.reasons, reason]})
