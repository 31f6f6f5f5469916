"""Which jurisdictions may be asked, decided before anything leaves the gateway.

Each jurisdiction is decided on its own permit: the one its HDAB issued (`gateway.permits`).
A jurisdiction without one is DENIED (PERMIT_MISSING, or why the permit presented cannot be
used); the others go on. With a permit, the legal policy engine (`policies.decision.decide`)
runs over that jurisdiction's effective policy with that permit's approval (revoked,
expired, another data request, purpose, datasets when the federation file names the node's,
and so on). A refused jurisdiction's node is never contacted. Each node decides again under
its own layers, on the permit it verifies itself (the final veto).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.permits import IssuerAllowed, Permit, Presented, candidates
from gateway.planner import Plan
from policies.decision import decide
from policies.plan import QueryPlan
from policies.policy_set import PolicySet
from policies.principal import ApprovalView, ResearcherView
from policies.reasons import AccessDecision, Decisions
from schema.codes import Jurisdiction


@dataclass(frozen=True, slots=True)
class Access:
    """One decision per jurisdiction of the plan, in the plan's order, and the permit each
    allowed jurisdiction was decided on (the one its node gets)."""

    decisions: Decisions
    permits: Mapping[Jurisdiction, Permit]


def decide_access(
    plan: Plan,
    presented: Presented,
    policies: PolicySet,
    *,
    allowed: IssuerAllowed,
    datasets: Mapping[Jurisdiction, frozenset[str] | None] | None = None,
    now: dt.datetime | None = None,
) -> Access:
    """`allowed` says which issuers' permits may decide which jurisdiction
    (`Federation.issues_permits_for`); `datasets`, the datasets of the nodes whose datasets
    the gateway knows (None: the nodes check)."""
    now = now or dt.datetime.now(dt.UTC)
    datasets = datasets or {}
    # The gateway verified every permit against its own issuer configuration: the policy's
    # issuer check is for nodes that trust a narrower set of HDABs.
    principal = ResearcherView(subject=plan.subject)
    decisions: list[AccessDecision] = []
    chosen: dict[Jurisdiction, Permit] = {}
    for jurisdiction in plan.jurisdictions:
        found = candidates(presented, jurisdiction, plan.request_id, allowed)
        if not found.permits:
            decisions.append(AccessDecision.of(jurisdiction, found.reasons))
            continue
        asked = QueryPlan(
            request_id=plan.request_id,
            jurisdictions=(jurisdiction,),
            query=plan.federated.query,
            datasets=datasets.get(jurisdiction),
        )
        own = policies.policies((jurisdiction,))
        # The first permit the policy allows decides; if none is allowed, the best one's
        # reasons are the jurisdiction's.
        first: tuple[Permit, AccessDecision] | None = None
        for permit in found.permits:
            decision = decide(
                principal, ApprovalView.from_approval(permit.approval), asked, own, now=now
            )[jurisdiction]
            if first is None or decision.allowed:
                first = (permit, decision)
            if decision.allowed:
                break
        assert first is not None
        permit, decision = first
        decisions.append(decision)
        chosen[jurisdiction] = permit
    return Access(Decisions(tuple(decisions)), chosen)
