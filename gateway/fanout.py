"""Fan-out: every allowed node is asked at once, each under its latency class's timeout
(`gateway.latency`), all within one overall deadline. A node that fails is reported with its
status; the others still count. The answers are combined once all are in, so a question
waits for its slowest node up to that node's own timeout: an interactive node that hangs is
given up after the interactive timeout, whatever a batch node in the same question may take."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Final

from opentelemetry.trace import NoOpTracer, SpanKind, Status, StatusCode, Tracer

from gateway.federation import NodeInfo
from gateway.latency import WHOLE_DEADLINE, NodeTimeouts
from gateway.nodes import NodeClient, NodeOutcome
from gateway.permits import Permit
from gateway.planner import Plan
from gateway.query_trail import node_step
from gateway.question_token import question_scope
from policies.reasons import AccessDecision
from schema import telemetry as otel
from schema.audit.entry import NodeStep
from schema.codes import Jurisdiction, NodeStatus
from schema.pooling import PoolingRequest
from schema.wire import NodeRequest

log = logging.getLogger(__name__)

# The client is given the node timeout and honours it; the fan-out's own guard fires this
# much later, so that a client's outcome (a TIMEOUT the circuit breaker can count) wins over
# the guard, which only holds a client that ignores its timeout.
GUARD_GRACE_S: Final = 0.1


async def fan_out(
    client: NodeClient,
    nodes: Mapping[Jurisdiction, NodeInfo],
    plan: Plan,
    decisions: Mapping[Jurisdiction, AccessDecision],
    *,
    permits: Mapping[Jurisdiction, Permit],
    deadline_s: float,
    timeouts: NodeTimeouts = WHOLE_DEADLINE,
    tracer: Tracer | None = None,
    steps: dict[Jurisdiction, NodeStep] | None = None,
    pooling: Mapping[Jurisdiction, PoolingRequest] | None = None,
    jurisdictions: Sequence[Jurisdiction] | None = None,
) -> list[NodeOutcome]:
    """One outcome per jurisdiction of the plan (or of `jurisdictions`), in that order. Each
    allowed node gets its own jurisdiction's permit (`permits`) and no other, and its part in
    a pooled round if `pooling` names it. Each node is waited for up to its latency class's
    timeout in `timeouts`, never beyond `deadline_s`. Each node asked is a client span, whose
    context the request carries to the node (`traceparent`); what its span records is the
    node's audit step, left in `steps` for the audit entry."""
    tracer = tracer or NoOpTracer()
    loop = asyncio.get_running_loop()
    # Every node starts now, so each node's timeout, capped by the deadline, keeps the deadline.
    started_at = loop.time()

    async def ask(jurisdiction: Jurisdiction) -> NodeOutcome:
        decision = decisions[jurisdiction]
        if not decision.allowed or jurisdiction not in permits:
            # (Allowed without a permit cannot happen: a decision needs one. Fail closed.)
            return NodeOutcome(
                jurisdiction=jurisdiction, status=NodeStatus.DENIED, reasons=decision.reasons
            )
        attributes = {otel.QUERY_ID: plan.query_id, otel.JURISDICTION: jurisdiction.value}
        with otel.traced(
            tracer, otel.GATEWAY_NODE_CALL, kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            outcome = await call(jurisdiction, permits[jurisdiction])
            step = node_step(outcome, decision)
            if steps is not None:
                steps[jurisdiction] = step
            span.set_attributes(
                {
                    otel.NODE_STATUS: outcome.status.value,
                    otel.RULES_FIRED: step.rules,
                    otel.CELLS_SUPPRESSED: step.cells_suppressed,
                }
            )
            if step.optout_register_version is not None:
                span.set_attribute(otel.OPTOUT_REGISTER_VERSION, step.optout_register_version)
            if outcome.status not in (NodeStatus.OK, NodeStatus.DENIED, NodeStatus.UNKNOWN_CODE):
                span.set_status(Status(StatusCode.ERROR))
                if outcome.error_code is not None:
                    span.set_attribute(otel.ERROR_CODE, outcome.error_code.value)
            return outcome

    async def call(jurisdiction: Jurisdiction, permit: Permit) -> NodeOutcome:
        started = time.perf_counter()
        node = nodes[jurisdiction]
        request = requests.get(jurisdiction)
        timeout = timeouts.within(deadline_s, node.latency)
        if request is None:
            return NodeOutcome.failed(
                jurisdiction, NodeStatus.ERROR, "the gateway could not make this node's request"
            )
        try:
            # The client gets the same timeout for its transport; this guard also holds a
            # client that ignores it.
            async with asyncio.timeout_at(started_at + timeout + GUARD_GRACE_S):
                return await client.query(
                    node,
                    request,
                    approval_token=permit.token,
                    timeout=timeout,
                )
        except TimeoutError:
            return NodeOutcome.failed(
                jurisdiction,
                NodeStatus.TIMEOUT,
                f"no answer within {timeout:.1f} s",
                latency_ms=(time.perf_counter() - started) * 1000,
            )
        except Exception as e:
            # A bug in a client must cost one node, not the whole answer.
            log.error("node %s: client failed with %s", jurisdiction.value, type(e).__name__)
            return NodeOutcome.failed(
                jurisdiction,
                NodeStatus.ERROR,
                "the gateway could not process this node's answer",
                latency_ms=(time.perf_counter() - started) * 1000,
            )

    asked = plan.jurisdictions if jurisdictions is None else jurisdictions
    # Every request is made before any leaves, so that one token can cover them all.
    requests: dict[Jurisdiction, NodeRequest] = {}
    for j in asked:
        if decisions[j].allowed and j in permits:
            try:
                requests[j] = plan.node_request(j, permits[j].approval, (pooling or {}).get(j))
            except Exception as e:
                # As a client's bug: it costs this node, not the question.
                log.error("node %s: request not made: %s", j.value, type(e).__name__)
    with question_scope({nodes[j].node_id: r for j, r in requests.items()}):
        return list(await asyncio.gather(*(ask(j) for j in asked)))
