"""What disclosure control does with each measure (`schema.measures`): how a node releases a
noisy value of it, and which cell rules the node and the gateway then run on it.

PERSON_COUNT's is today's path of `policies.disclosure`, referenced here, not moved: `release`
(below the jurisdiction's minimum LOW, zeros included; otherwise PERTURBED with the noise's sd),
then the node's rules (rounding to the jurisdiction's base) and, on pooled values, the
gateway's (the strictest minimum of the jurisdictions in them, then their rounding). VALUE_N,
the persons with a value of the question's variable, is a count and released as one. The sums
of a variable's clipped values (VALUE_SUM, VALUE_SUM_SQUARES) are released noisy (`sum_release`)
and not rounded; a node withholds them where the cell's VALUE_N is withheld
(`connectors.release.released_table`), and the gateway derives means only where the pooled
VALUE_N is released (`gateway.statistics`). An incidence rate's events (OUTCOME_EVENTS) are
a count of persons and released as one; its days at risk (PERSON_DAYS) are a noisy sum,
released as sums are and then withheld where the cell's count of persons is (COUNT_WITHHELD)
or where the profile's magnitude rules find them dominated (`policies.person_time`, run by
`connectors.release.released_table`). A measure without an entry here cannot be
released: every `MeasureKind` needs one (a completeness test holds them to it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from policies import disclosure
from policies.disclosure import CellContext, Rule
from schema.codes import Jurisdiction, MeasureKind, ValueStatus
from schema.result import Reason, Value

# A sum withheld because its cell's count of persons with a value was.
N_WITHHELD: Final = "N_WITHHELD"
# Days at risk withheld because their cell's count of persons was.
COUNT_WITHHELD: Final = "COUNT_WITHHELD"

Release = Callable[[int, float, CellContext], Value]


@dataclass(frozen=True, slots=True)
class Protection:
    """A measure's disclosure rules: `release` turns a noisy value (with noise of sd `sd`)
    into what may leave the node, `node_rules` run on it at the node, `gateway_rules` on the
    gateway's pooled values and on each node's value as if released alone."""

    release: Release
    node_rules: tuple[Rule, ...]
    gateway_rules: tuple[Rule, ...]
    # In a context, the least value `gateway_rules` leave as it is (withheld values too), or
    # None: a shortcut for the gateway's check of every cell, never a rule of its own.
    gateway_settled_from: Callable[[CellContext], int | None] = lambda _ctx: None

    def released(self, noisy: int, sd: float, ctx: CellContext) -> Value:
        """The value a node releases for a noisy value."""
        return disclosure.protect(self.release(noisy, sd, ctx), ctx, self.node_rules)


def sum_release(noisy: int, sd: float, ctx: CellContext) -> Value:
    """A noisy sum of clipped values: released with its noise's sd (whether it is released
    at all is its cell's count's to say, not the sum's own value)."""
    return Value.trusted(
        value=noisy,
        status=ValueStatus.PERTURBED,
        reasons=[disclosure.noise_reason(sd, ctx.jurisdiction)],
        bound=None,
        sd=sd,
        contributors=None,
    )


@functools.lru_cache(maxsize=256)
def n_withheld(jurisdiction: Jurisdiction | None) -> Reason:
    return Reason(
        rule=N_WITHHELD,
        jurisdiction=jurisdiction,
        message="withheld with the cell's count of persons with a value",
    )


@functools.lru_cache(maxsize=256)
def count_withheld(jurisdiction: Jurisdiction | None) -> Reason:
    return Reason(
        rule=COUNT_WITHHELD,
        jurisdiction=jurisdiction,
        message="withheld with the cell's count of persons",
    )


_COUNT: Final = Protection(
    release=disclosure.release,
    node_rules=disclosure.NODE_RULES,
    gateway_rules=disclosure.GATEWAY_RULES,
    gateway_settled_from=disclosure.gateway_settled_from,
)
_SUM: Final = Protection(release=sum_release, node_rules=(), gateway_rules=())

PROTECTIONS: Final[dict[MeasureKind, Protection]] = {
    MeasureKind.PERSON_COUNT: _COUNT,
    MeasureKind.VALUE_N: _COUNT,
    MeasureKind.VALUE_SUM: _SUM,
    MeasureKind.VALUE_SUM_SQUARES: _SUM,
    MeasureKind.OUTCOME_EVENTS: _COUNT,
    MeasureKind.PERSON_DAYS: _SUM,
}
