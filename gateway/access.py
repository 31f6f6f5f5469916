"""Which jurisdictions may be asked, decided before anything leaves the gateway.

The legal policy engine (`policies.decision.decide`) runs over the effective policy of every
jurisdiction of the plan; a refused jurisdiction is reported DENIED with its reasons and its
node is never contacted. Each node decides again under its own layers (the final veto).
"""

from __future__ import annotations

import datetime as dt

from gateway.auth import Principal
from gateway.planner import Plan
from policies.decision import decide as decide_policy
from policies.plan import QueryPlan
from policies.policy_set import PolicySet
from policies.principal import ApprovalView
from policies.principal import Principal as PolicyPrincipal
from policies.reasons import Decisions


def decide(
    principal: Principal, plan: Plan, policies: PolicySet, *, now: dt.datetime | None = None
) -> Decisions:
    """One decision per jurisdiction of the plan, in the plan's order."""
    return decide_policy(
        # The gateway verified the token against its own issuer configuration: the issuer
        # check of the policy is for nodes that trust a narrower set of HDABs.
        PolicyPrincipal(subject=principal.subject),
        ApprovalView.from_approval(plan.approval),
        QueryPlan.of_federated(plan.federated),
        policies.policies(plan.jurisdictions),
        now=now or dt.datetime.now(dt.UTC),
    )
