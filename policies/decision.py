"""The policy decision: may this query, under this approval, be answered by each of its
jurisdictions?

`decide` is pure: everything it needs is an argument, including the time. It fails closed:
a jurisdiction without a policy is refused (NO_POLICY), as is every jurisdiction when a check
itself fails (CHECK_FAILED). The gateway calls it with the effective policies of all the
query's jurisdictions; a connector calls it with its own jurisdiction's policy composed with
its node layer, so the node has the final veto.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from policies.checks import CHECKS, Check, CheckInput
from policies.plan import QueryPlan
from policies.policy_set import EffectivePolicy
from policies.principal import ApprovalView, ResearcherView
from policies.reasons import AccessDecision, Decisions, PolicyReason, RuleId
from schema.codes import Jurisdiction


def decide(
    principal: ResearcherView,
    approval: ApprovalView,
    plan: QueryPlan,
    policies: Mapping[Jurisdiction, EffectivePolicy],
    *,
    now: dt.datetime,
    optout_applied: bool | None = None,
    checks: Sequence[Check] = CHECKS,
) -> Decisions:
    """One decision per jurisdiction of the plan, with every reason to refuse it.

    `policies` maps each jurisdiction to its effective policy; a jurisdiction missing from it
    is refused. `now` must be timezone-aware.
    """
    if now.tzinfo is None:
        raise ValueError("decide() needs a timezone-aware `now`")
    decisions = []
    for jurisdiction in plan.jurisdictions:
        policy = policies.get(jurisdiction)
        if policy is None:
            reasons = [
                PolicyReason.of(
                    RuleId.NO_POLICY,
                    jurisdiction,
                    f"no policy is configured for {jurisdiction.value}",
                )
            ]
        else:
            given = CheckInput(
                jurisdiction=jurisdiction,
                policy=policy,
                principal=principal,
                approval=approval,
                plan=plan,
                now=now.astimezone(dt.UTC),
                optout_applied=optout_applied,
            )
            reasons = [reason for check in checks for reason in _run(check, given)]
        decisions.append(AccessDecision.of(jurisdiction, reasons))
    return Decisions(tuple(decisions))


def _run(check: Check, given: CheckInput) -> list[PolicyReason]:
    try:
        return list(check(given))
    except Exception:  # a broken check must refuse, not let the query through
        name = getattr(check, "__name__", type(check).__name__)
        return [given.reason(RuleId.CHECK_FAILED, f"policy check {name} failed")]
