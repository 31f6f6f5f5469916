"""Composition of policy layers: the effective rule is the strictest of the layers' rules.

Every rule has an order, "at least as strict as" (⪰), and a join: the least value at least as
strict as both arguments. Each join is commutative, associative and idempotent, and an absent
rule is the bottom of its order (it says nothing), so composing layers

- yields a result at least as strict as every layer (a layer can only tighten),
- does not depend on the order or grouping of the layers, and
- never becomes looser when a layer is added.

The same function composes the layers of one jurisdiction (EU baseline, national, node) and the
policies of several jurisdictions contributing to one cell: such a cell must satisfy all of
their rules at once. The whole-policy order is the product of the per-rule orders.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any, Final, Generic, TypeVar

from pydantic import BaseModel

from policies.model import (
    RULE_PATHS,
    Budget,
    Dominance,
    Noise,
    RulePath,
    Rules,
    SecurePooling,
    Sourced,
)

T = TypeVar("T")
SOURCE_SEPARATOR: Final = "; "


@dataclass(frozen=True, slots=True)
class Law(Generic[T]):
    """How one rule is ordered and joined."""

    describe: str
    at_least_as_strict: Callable[[T, T], bool]
    join: Callable[[T, T], T]


def _ge(a: float, b: float) -> bool:
    return a >= b


def _le(a: float, b: float) -> bool:
    return a <= b


def _implies(a: bool, b: bool) -> bool:
    # a ⪰ b for booleans where true is stricter: whenever b requires something, a does too.
    return a or not b


def _divisible(a: int, b: int) -> bool:
    # A value rounded to base a is also a multiple of b exactly when b divides a: that is
    # what it means for base a to satisfy the rule "round to base b".
    return a % b == 0


def _dominance_order(a: Dominance, b: Dominance) -> bool:
    # Counting more contributors (larger n) against a lower share (smaller k) flags every
    # cell the other rule flags, and more.
    return a.n >= b.n and a.k <= b.k


def _dominance_join(a: Dominance, b: Dominance) -> Dominance:
    return Dominance(n=max(a.n, b.n), k=min(a.k, b.k))


def _noise_order(a: Noise, b: Noise) -> bool:
    return a.sigma >= b.sigma


def _noise_join(a: Noise, b: Noise) -> Noise:
    return a if a.sigma >= b.sigma else b


def _budget_order(a: Budget, b: Budget) -> bool:
    return a.applicant <= b.applicant and a.organisation <= b.organisation


def _budget_join(a: Budget, b: Budget) -> Budget:
    return Budget(
        applicant=min(a.applicant, b.applicant), organisation=min(a.organisation, b.organisation)
    )


def _pooling_order(a: SecurePooling, b: SecurePooling) -> bool:
    # Taking part is a permission: withholding it (false) is stricter, and so is asking for
    # more nodes in a round.
    return (not a.enabled or b.enabled) and a.min_nodes >= b.min_nodes


def _pooling_join(a: SecurePooling, b: SecurePooling) -> SecurePooling:
    return SecurePooling(enabled=a.enabled and b.enabled, min_nodes=max(a.min_nodes, b.min_nodes))


def _subset(a: frozenset[Any], b: frozenset[Any]) -> bool:
    return a <= b


def _superset(a: frozenset[Any], b: frozenset[Any]) -> bool:
    return a >= b


def _intersection(a: frozenset[Any], b: frozenset[Any]) -> frozenset[Any]:
    return a & b


def _union(a: frozenset[Any], b: frozenset[Any]) -> frozenset[Any]:
    return a | b


HIGHER: Final[Law[Any]] = Law("higher is stricter", _ge, max)
LOWER: Final[Law[Any]] = Law("lower is stricter", _le, min)
REQUIRED: Final[Law[bool]] = Law("true is stricter", _implies, lambda a, b: a or b)
FEWER: Final[Law[frozenset[Any]]] = Law("fewer is stricter", _subset, _intersection)
MORE: Final[Law[frozenset[Any]]] = Law("more is stricter", _superset, _union)

LAWS: Final[dict[RulePath, Law[Any]]] = {
    ("disclosure", "min_count"): HIGHER,
    ("disclosure", "rounding_base"): Law(
        "a multiple is stricter (released values must be multiples of every base)",
        _divisible,
        math.lcm,
    ),
    ("disclosure", "noise"): Law("more noise is stricter", _noise_order, _noise_join),
    ("disclosure", "budget"): Law(
        "a smaller budget per person is stricter", _budget_order, _budget_join
    ),
    ("disclosure", "secure_pooling"): Law(
        "not taking part (enabled = false) and a larger min_nodes are stricter",
        _pooling_order,
        _pooling_join,
    ),
    ("disclosure", "dominance"): Law(
        "larger n and smaller k are stricter", _dominance_order, _dominance_join
    ),
    ("disclosure", "p_percent"): HIGHER,
    ("dimensions", "allowed"): FEWER,
    ("dimensions", "not_allowed"): MORE,
    ("dimensions", "min_age_band_width"): HIGHER,
    ("dimensions", "max_cells"): LOWER,
    ("purposes", "allowed"): FEWER,
    ("purposes", "public_body_only"): MORE,
    ("optout", "required"): REQUIRED,
    ("rate_limits", "per_researcher_per_minute"): LOWER,
    ("rate_limits", "per_approval_per_day"): LOWER,
    ("approvals", "revoked"): MORE,
}


# -- the order ------------------------------------------------------------------------------
def rule_at_least_as_strict(path: RulePath, a: Sourced[Any] | None, b: Sourced[Any] | None) -> bool:
    """a ⪰ b for one rule; an absent rule is the bottom (anything is at least as strict)."""
    if b is None:
        return True
    if a is None:
        return False
    return LAWS[path].at_least_as_strict(a.value, b.value)


def looser_rules(a: Rules, b: Rules) -> list[RulePath]:
    """The rules on which `a` is not at least as strict as `b` (empty: a ⪰ b)."""
    return [
        path for path in RULE_PATHS if not rule_at_least_as_strict(path, a.rule(path), b.rule(path))
    ]


def at_least_as_strict(a: Rules, b: Rules) -> bool:
    """a ⪰ b: on every rule, a is at least as strict as b."""
    return not looser_rules(a, b)


def same_rules(a: Rules, b: Rules) -> bool:
    """Equal in the order (a ⪰ b and b ⪰ a), whatever the sources say."""
    return at_least_as_strict(a, b) and at_least_as_strict(b, a)


# -- the join -------------------------------------------------------------------------------
_SECTIONS: Final[dict[str, type[BaseModel]]] = {name: type(section) for name, section in Rules()}


@dataclass(frozen=True, slots=True)
class Composed:
    """Composed rules, and for every stated rule the indices of the layers it comes from."""

    rules: Rules
    provenance: dict[RulePath, tuple[int, ...]]


def compose(layers: Iterable[Rules]) -> Rules:
    """The strictest rules of all layers (the join in the order). No layer: no rule."""
    return compose_with_provenance(list(layers)).rules


def compose_with_provenance(layers: Sequence[Rules]) -> Composed:
    sections: dict[str, dict[str, Any]] = {}
    provenance: dict[RulePath, tuple[int, ...]] = {}
    for path in RULE_PATHS:
        stated = [
            (i, rule) for i, layer in enumerate(layers) if (rule := layer.rule(path)) is not None
        ]
        if not stated:
            continue
        joined, contributors = _join(path, stated)
        sections.setdefault(path[0], {})[path[1]] = joined
        provenance[path] = contributors
    mechanisms = _unique(layer.optout.mechanism for layer in layers)
    if mechanisms:
        sections.setdefault("optout", {})["mechanism"] = SOURCE_SEPARATOR.join(mechanisms)
    rules = Rules(
        **{name: _SECTIONS[name].model_validate(fields) for name, fields in sections.items()}
    )
    return Composed(rules=rules, provenance=provenance)


def _join(
    path: RulePath, stated: Sequence[tuple[int, Sourced[Any]]]
) -> tuple[Sourced[Any], tuple[int, ...]]:
    law = LAWS[path]
    value = reduce(law.join, (rule.value for _, rule in stated))
    # A layer whose own value is the result accounts for it on its own (and one confirmed
    # source confirms it). A value no single layer states is synthesised from all of them
    # (an intersection, a least common multiple) and is confirmed only if all of them are.
    alone = [(i, rule) for i, rule in stated if law.at_least_as_strict(rule.value, value)]
    contributors = alone or list(stated)
    verified = (
        any(rule.verified for _, rule in alone)
        if alone
        else all(rule.verified for _, rule in stated)
    )
    source = SOURCE_SEPARATOR.join(_unique(rule.source for _, rule in contributors))
    first = stated[0][1]
    # Built without validation: a synthesised value may leave the range a file may state
    # (an lcm of two valid bases can exceed the bound) and still be the correct join.
    joined = type(first).model_construct(value=value, source=source, verified=verified)
    return joined, tuple(i for i, _ in contributors)


def _unique(texts: Iterable[str | None]) -> list[str]:
    seen: dict[str, None] = {}
    for text in texts:
        if text:
            seen.setdefault(text, None)
    return list(seen)
