"""Which jurisdictions a researcher may ask, decided before anything leaves the gateway.

This is the seam for the legal policy engine (purposes, datasets, per-jurisdiction rules).
Today it applies one rule: a jurisdiction outside the approval's jurisdictions is DENIED.
Nodes still check the approval themselves; this only saves asking them when the answer is
known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from gateway.auth import Principal
from gateway.planner import Plan
from schema.approval import Approval
from schema.codes import Jurisdiction
from schema.result import Reason

APPROVAL_SCOPE: Final = "APPROVAL_SCOPE"


@dataclass(frozen=True, slots=True)
class Decision:
    jurisdiction: Jurisdiction
    allowed: bool
    reasons: tuple[Reason, ...] = ()


def decide(principal: Principal, approval: Approval, plan: Plan) -> Mapping[Jurisdiction, Decision]:
    """One decision per jurisdiction of the plan, in the plan's order."""
    approved = set(approval.jurisdictions)
    return {
        j: Decision(j, allowed=True)
        if j in approved
        else Decision(
            j,
            allowed=False,
            reasons=(
                Reason(
                    rule=APPROVAL_SCOPE,
                    jurisdiction=j,
                    message=f"data request {approval.request_id} does not cover {j.value}",
                ),
            ),
        )
        for j in plan.jurisdictions
    }
