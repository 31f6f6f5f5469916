"""How many nodes must answer for a query's numbers to be worth having: a researcher may
require a minimum number (`minNodes`) or share (`minShare`) of the asked nodes to answer OK.
Below it the query fails with QUORUM_NOT_MET, naming every node's status, instead of
returning pooled numbers over too few countries."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.nodes import NodeOutcome
from schema.codes import NodeStatus
from schema.errors import ErrorCode, TesseraError


@dataclass(frozen=True, slots=True)
class Quorum:
    """At least `required` of the asked nodes must answer OK (DENIED is no answer: it
    contributes nothing)."""

    required: int
    asked: int

    @classmethod
    def of(cls, *, min_nodes: int | None, min_share: float | None, asked: int) -> Quorum:
        """Validate the arguments against the number of nodes asked; INVALID_ARGUMENT when
        they cannot be met or make no sense."""
        required = 0
        if min_nodes is not None:
            if not 1 <= min_nodes <= asked:
                raise TesseraError(
                    f"minNodes must lie between 1 and the {asked} jurisdictions asked",
                    code=ErrorCode.INVALID_ARGUMENT,
                    argument="minNodes",
                    min=1,
                    max=asked,
                )
            required = min_nodes
        if min_share is not None:
            if not (math.isfinite(min_share) and 0 < min_share <= 1):
                raise TesseraError(
                    "minShare must lie in (0, 1]",
                    code=ErrorCode.INVALID_ARGUMENT,
                    argument="minShare",
                    min=0,
                    max=1,
                )
            # A share of the asked nodes, rounded up: 0.5 of 3 nodes needs 2.
            required = max(required, math.ceil(min_share * asked - 1e-9))
        return cls(required=required, asked=asked)

    def check(self, outcomes: Sequence[NodeOutcome]) -> None:
        answered = sum(1 for o in outcomes if o.status is NodeStatus.OK)
        if answered < self.required:
            raise TesseraError(
                f"{answered} of {self.asked} nodes answered; this query requires {self.required}",
                code=ErrorCode.QUORUM_NOT_MET,
                required=self.required,
                answered=answered,
                nodes={o.jurisdiction.value: o.status.value for o in outcomes},
            )
