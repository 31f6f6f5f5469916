"""Asking the nodes a question that pools securely: one round, and a second when a
participant drops out of the first.

Round 1 asks every allowed node at once (`gateway.fanout`), the participants with their part
in the pooled round (`gateway.pooling`). If every participant answers with its shares, the
gateway adds them up and is done. If one fails, times out, is rejected or refuses the round,
the masks it shares with the others do not cancel: the sum of the other shares is uniformly
distributed and is not even computed. The round is abandoned, and round 2 asks the nodes that
answered once more, with a new nonce and participant set (they return their stored national
answers, free, and draw new shares for the new set, charged), and asks a node that refused
the round (POOL_REFUSED) for its tables nationally. If round 2 cannot pool (too few nodes
left) its nodes answer every table nationally, their own totals included (charged: a round-1
participant of a question asking no country's count had released none), and the pooled cells
are the sum of national parts as without secure pooling; if round 2 fails too, the pooled
cells are withheld (INCOMPLETE_POOL): their national parts were never released, which is what
saved their cost.

The two rounds together reveal no node's count beyond the noise: round 1's partial sum is
never formed (and would be uniform), and round 2's shares are new draws, independent of
round 1's, so even a gateway that obtained both sums over sets A and A minus {j} would hold
the difference x_j plus noise of variance σ² + σ².

Round 2 gets what is left of the question's deadline, each node again at most its latency
class's timeout: a node that times out in round 1 takes the time with it unless its class's
node timeout (`TESSERA_GATEWAY_NODE_TIMEOUT_S`, `..._BATCH_NODE_TIMEOUT_S`) is below the
deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from opentelemetry.trace import Tracer

from gateway.combine import IMPLAUSIBLE_POOL, INCOMPLETE_POOL
from gateway.fanout import fan_out
from gateway.federation import NodeInfo
from gateway.latency import WHOLE_DEADLINE, NodeTimeouts
from gateway.nodes import NodeClient, NodeOutcome
from gateway.permits import Permit
from gateway.planner import Plan
from gateway.pooling import (
    Pooling,
    PoolRound,
    Profiles,
    SecurePool,
    domains,
    plan_round,
    pooled_tables,
    unmask,
)
from policies.reasons import AccessDecision
from schema.audit.entry import NodeStep
from schema.codes import Jurisdiction, NodeStatus
from schema.errors import ErrorCode
from schema.measures import MEASURES
from schema.result import Reason

# A second round with less of the deadline left than this is not started.
MIN_ROUND_S: Final = 0.1
# A pooled count further below zero than this many sds of its noise is no count: a node's
# shares or masks were wrong (an honest cell of nobody goes there about once in 10^15).
PLAUSIBLE_SDS: Final = 8.0


@dataclass(frozen=True, slots=True)
class Gathered:
    outcomes: list[NodeOutcome]
    pooling: Pooling | None


async def gather(
    client: NodeClient,
    nodes: Mapping[Jurisdiction, NodeInfo],
    plan: Plan,
    decisions: Mapping[Jurisdiction, AccessDecision],
    *,
    permits: Mapping[Jurisdiction, Permit],
    profiles: Profiles,
    deadline_s: float,
    timeouts: NodeTimeouts = WHOLE_DEADLINE,
    tracer: Tracer | None = None,
    steps: dict[Jurisdiction, NodeStep] | None = None,
    pool_total: bool = True,
    per_country: bool = True,
    secure_pooling: bool = True,
) -> Gathered:
    """Every node's outcome, in the plan's order, and what secure pooling came to (None when
    the question pools nothing). `pool_total`: whether the question asks the pooled count;
    `per_country`: whether it asks each country's own (`gateway.pooling.national_total`);
    `secure_pooling`: whether its tables may be pooled securely at all."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    tables = pooled_tables(plan, total=pool_total) if secure_pooling else ()
    allowed = [j for j in plan.jurisdictions if decisions[j].allowed and j in permits]
    first = plan_round(1, allowed, plan, tables, nodes, profiles, per_country=per_country)
    outcomes = await fan_out(
        client,
        nodes,
        plan,
        decisions,
        permits=permits,
        deadline_s=deadline_s,
        timeouts=timeouts,
        tracer=tracer,
        steps=steps,
        pooling=None if first is None else first.requests,
    )
    if first is None:
        return Gathered(outcomes, None)
    known = domains(plan, tables)
    by_node = {o.jurisdiction: o for o in outcomes}
    pool = unmask(first, by_node, plan)
    if pool is not None:
        return Gathered(outcomes, _checked(Pooling(tuple(tables), known, pool)))

    dropped = [j for j in first.participants if not _pooled(by_node[j], first)]
    failure = _failure(dropped, by_node)
    survivors = [j for j in first.participants if j not in dropped]
    refused = [j for j in dropped if by_node[j].error_code is ErrorCode.POOL_REFUSED]
    remaining = deadline_s - (loop.time() - started)
    if not (survivors or refused) or remaining < MIN_ROUND_S:
        return Gathered(outcomes, Pooling(tuple(tables), known, None, failure))
    second = plan_round(2, survivors, plan, tables, nodes, profiles, per_country=per_country)
    asked = [j for j in plan.jurisdictions if j in survivors or j in refused]
    again = await fan_out(
        client,
        nodes,
        plan,
        decisions,
        permits=permits,
        deadline_s=remaining,
        timeouts=timeouts,
        tracer=tracer,
        steps=steps,
        pooling={} if second is None else second.requests,
        jurisdictions=asked,
    )
    by_node_again = {o.jurisdiction: o for o in again}
    merged = _merged(by_node, by_node_again)
    final = [merged[o.jurisdiction] for o in outcomes]
    if second is None:
        # Too few nodes left to pool: they answered every table nationally.
        return Gathered(final, Pooling(tuple(tables), known, None, failure))
    pool = unmask(second, by_node_again, plan)
    if pool is None:
        again_dropped = [j for j in second.participants if not _pooled(by_node_again[j], second)]
        failure = _failure([*dropped, *again_dropped], {**by_node, **by_node_again}, twice=True)
        return Gathered(final, Pooling(tuple(tables), known, None, failure))
    return Gathered(final, _checked(Pooling(tuple(tables), known, pool, failure)))


def _pooled(outcome: NodeOutcome, round_: PoolRound) -> bool:
    return outcome.status is NodeStatus.OK and set(outcome.shares) == set(round_.request.tables)


def _failure(
    dropped: Sequence[Jurisdiction],
    outcomes: Mapping[Jurisdiction, NodeOutcome],
    *,
    twice: bool = False,
) -> Reason:
    who = ", ".join(f"{j.value} ({_what(outcomes[j])})" for j in dict.fromkeys(dropped))
    rounds = "two rounds" if twice else "the round"
    return Reason(
        rule=INCOMPLETE_POOL,
        message=f"secure pooling did not complete: {who or 'a node'} dropped out of {rounds}",
    )


def _what(outcome: NodeOutcome) -> str:
    code = outcome.error_code
    return code.value if code is not None else outcome.status.value


def _merged(
    first: Mapping[Jurisdiction, NodeOutcome], second: Mapping[Jurisdiction, NodeOutcome]
) -> dict[Jurisdiction, NodeOutcome]:
    """Each node's outcome of round 2 where it answered it, with what both rounds cost; its
    outcome of round 1 otherwise (its national answer, the same in both rounds)."""
    merged = dict(first)
    for j, again in second.items():
        before = first[j]
        if again.status is not NodeStatus.OK and before.status is NodeStatus.OK:
            continue
        response = again.response
        if (
            response is not None
            and response.privacy is not None
            and before.response is not None
            and before.response.privacy is not None
        ):
            spend = response.privacy.model_copy(
                update={
                    "question_rho": response.privacy.question_rho
                    + before.response.privacy.question_rho
                }
            )
            response = response.model_copy(update={"privacy": spend})
        latency = None
        if again.latency_ms is not None and before.latency_ms is not None:
            latency = again.latency_ms + before.latency_ms
        merged[j] = dataclasses.replace(
            again, response=response, latency_ms=latency or again.latency_ms
        )
    return merged


def _checked(pooling: Pooling) -> Pooling:
    """The pooling, unless a pooled count is impossible: then no pooled cell is released
    (IMPLAUSIBLE_POOL), since any node's shares may be the wrong ones."""
    pool: SecurePool | None = pooling.pool
    if pool is None:
        return pooling
    floor, most = -PLAUSIBLE_SDS * pool.sigma, MEASURES[pool.measure].maximum
    if all(floor <= v <= most for cells in pool.cells.values() for v in cells.values()):
        return pooling
    reason = Reason(
        rule=IMPLAUSIBLE_POOL,
        message="the pooled shares do not add up to counts: a node's shares or masks were wrong",
    )
    return dataclasses.replace(pooling, pool=None, failure=reason)
