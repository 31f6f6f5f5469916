"""Disclosure control as a pipeline of small typed rules.

At a node every count gets noise first: a discrete Gaussian drawn once per applicant
organisation, question, cell and data release, and stored (`connectors.answers`), so the
same question always gets the same numbers and a different one is paid for from each
person's budget (`connectors.ledger`). `release` turns a noisy count into the value that
leaves the node:

- below the jurisdiction's minimum, `LOW`: no value, and zeros are LOW too, so that nobody
  learns whether a group is empty or small;
- otherwise `PERTURBED`, with the noise's standard deviation (`sd`).

Then the cell rules (`Rule`) run on the released value (rounding to the jurisdiction's base).
The gateway runs its own rules on pooled values, the sums of parts the nodes released: at
least the strictest minimum of the jurisdictions in them, and rounded to all their bases.
Nothing here depends on anything but the value and the profile: no status or refusal tells
more than the noisy value itself.

Rules never log, and a reason never carries the value it explains.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from policies.profiles import DisclosureProfile
from schema.codes import Jurisdiction, ValueStatus
from schema.result import Reason, Value

BELOW_MINIMUM: Final = "BELOW_MINIMUM"
NOISE: Final = "NOISE"
ROUNDING: Final = "ROUNDING"


@dataclass(frozen=True, slots=True)
class CellContext:
    """What a rule may know about a cell besides its value."""

    profile: DisclosureProfile
    # The jurisdiction whose rule applies; None when several contribute (the gateway's pooled
    # cells): reasons then name no single jurisdiction.
    jurisdiction: Jurisdiction | None


Rule = Callable[[Value, CellContext], Value]


def release(noisy: int, sd: float, ctx: CellContext) -> Value:
    """The value released for a noisy count (which may be negative) with noise of sd `sd`."""
    if noisy < ctx.profile.min_count:
        return Value.low(below_minimum(ctx.profile.min_count, ctx.jurisdiction), sd=sd)
    return Value.trusted(
        value=noisy,
        status=ValueStatus.PERTURBED,
        reasons=[noise_reason(sd, ctx.jurisdiction)],
        bound=None,
        sd=sd,
        contributors=None,
    )


# Reasons are the same for every cell of a node's answer: made once, shared by all.
@functools.lru_cache(maxsize=1024)
def below_minimum(min_count: int, jurisdiction: Jurisdiction | None) -> Reason:
    return Reason(
        rule=BELOW_MINIMUM,
        jurisdiction=jurisdiction,
        message=f"the noisy count is below the minimum of {min_count} (zero included)",
    )


@functools.lru_cache(maxsize=1024)
def noise_reason(sd: float, jurisdiction: Jurisdiction | None) -> Reason:
    return Reason(
        rule=NOISE,
        jurisdiction=jurisdiction,
        message=f"unbiased noise of standard deviation {sd:g} added; the same question "
        "always gets the same number",
    )


def at_least_minimum(value: Value, ctx: CellContext) -> Value:
    """A released value below the minimum is LOW (at the gateway: a pooled value against the
    strictest minimum of its jurisdictions)."""
    if value.value is None or value.value >= ctx.profile.min_count:
        return value
    return Value.low(
        *value.reasons, below_minimum(ctx.profile.min_count, ctx.jurisdiction), sd=value.sd
    )


def round_to_base(value: Value, ctx: CellContext) -> Value:
    """Round to a multiple of the profile's base: to the nearest (halves up), never below the
    smallest multiple that is at least the minimum count. Deterministic in the value."""
    base = ctx.profile.rounding_base
    if base == 1 or value.value is None:
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
        sd=value.sd,
    )


NODE_RULES: tuple[Rule, ...] = (round_to_base,)
GATEWAY_RULES: tuple[Rule, ...] = (at_least_minimum, round_to_base)


def gateway_settled_from(ctx: CellContext) -> int | None:
    """The least value `GATEWAY_RULES` leave as it is in this context (a withheld value is
    left too), or None when they may change any value (a profile that rounds). The gateway
    checks each node's every cell against its rules: most are released values at or above the
    minimum, and this lets it pass them without a call per rule."""
    profile = ctx.profile
    return profile.min_count if profile.rounding_base == 1 else None


def protect(value: Value, ctx: CellContext, rules: Sequence[Rule]) -> Value:
    for rule in rules:
        value = rule(value, ctx)
        if value.value is None:
            break
    return value


def with_reason(value: Value, reason: Reason) -> Value:
    return value.model_copy(update={"reasons": [*value.reasons, reason]})
