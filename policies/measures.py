"""What disclosure control does with each measure (`schema.measures`): how a node releases a
noisy value of it, and which cell rules the node and the gateway then run on it.

PERSON_COUNT's is today's path of `policies.disclosure`, referenced here, not moved: `release`
(below the jurisdiction's minimum LOW, zeros included; otherwise PERTURBED with the noise's sd),
then the node's rules (rounding to the jurisdiction's base) and, on pooled values, the
gateway's (the strictest minimum of the jurisdictions in them, then their rounding). A measure
without an entry here cannot be released: every `MeasureKind` needs one (a completeness test
holds them to it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from policies import disclosure
from policies.disclosure import CellContext, Rule
from schema.codes import MeasureKind
from schema.result import Value

Release = Callable[[int, float, CellContext], Value]


@dataclass(frozen=True, slots=True)
class Protection:
    """A measure's disclosure rules: `release` turns a noisy value (with noise of sd `sd`)
    into what may leave the node, `node_rules` run on it at the node, `gateway_rules` on the
    gateway's pooled values and on each node's value as if released alone."""

    release: Release
    node_rules: tuple[Rule, ...]
    gateway_rules: tuple[Rule, ...]

    def released(self, noisy: int, sd: float, ctx: CellContext) -> Value:
        """The value a node releases for a noisy value."""
        return disclosure.protect(self.release(noisy, sd, ctx), ctx, self.node_rules)


PROTECTIONS: Final[dict[MeasureKind, Protection]] = {
    MeasureKind.PERSON_COUNT: Protection(
        release=disclosure.release,
        node_rules=disclosure.NODE_RULES,
        gateway_rules=disclosure.GATEWAY_RULES,
    ),
}
