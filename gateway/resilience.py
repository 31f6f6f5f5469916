"""Staying up when nodes are not: per node, a bound on requests in flight, a circuit breaker,
and retries of what is safe to retry, all inside the caller's deadline.

`ResilientNodeClient` wraps any `NodeClient`. For each call to a node it

1. takes one of the node's in-flight slots (`schema.fair_queue`), waiting for one at most until
   the deadline and only while few others wait: past that the node is NODE_BUSY at once (load
   is pushed back on the researcher, never queued without limit). The slots are shared fairly
   between researchers: each holds at most its share of them, freed slots go round the
   researchers waiting, and one researcher's burst only ever pushes out its own requests;
2. asks the node's `CircuitBreaker`: while the circuit is open (the node failed too often in
   a row) the node is not asked at all (CIRCUIT_OPEN) until a probe is due; then one request
   goes through as the probe, and its outcome closes or reopens the circuit;
3. calls the inner client, again after a jittered, growing pause when (and only when) the
   outcome is `retryable` (the connection could not be opened, so the node never saw the
   request) and the deadline leaves time for another attempt. Each attempt is a new signed
   request: a request token is good for one use only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from gateway.federation import NodeInfo
from gateway.latency import LatencyClass
from gateway.nodes import NodeClient, NodeOutcome
from schema.codes import NodeStatus
from schema.errors import ErrorCode
from schema.fair_queue import BulkheadFull, FairBulkhead
from schema.wire import NodeRequest

log = logging.getLogger(__name__)

# An attempt with less time than this left is not worth starting.
MIN_ATTEMPT_S: Final = 0.05
# Node errors caused by the question, not by the node: they say nothing of its health (a
# pooled round a node refuses for its form, say because its hub stays out, included).
_QUESTION_ERRORS: Final = frozenset(
    {ErrorCode.BAD_REQUEST, ErrorCode.BODY_TOO_LARGE, ErrorCode.POOL_REFUSED}
)

Clock = Callable[[], float]


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass
class CircuitBreaker:
    """Opens after `failure_threshold` failures in a row; after `reset_after_s` lets one probe
    through (half-open): a success closes the circuit, a failure opens it again."""

    failure_threshold: int
    reset_after_s: float
    clock: Clock = time.monotonic
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False

    def admit(self) -> bool:
        """Whether a request may go now; in half-open state, admits the one probe."""
        if self.state is CircuitState.OPEN and self.clock() - self.opened_at >= self.reset_after_s:
            self.state = CircuitState.HALF_OPEN
        if self.state is CircuitState.CLOSED:
            return True
        if self.state is CircuitState.HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def retry_in(self) -> float:
        if self.state is CircuitState.OPEN:
            return max(0.0, self.opened_at + self.reset_after_s - self.clock())
        return 0.0

    def succeeded(self) -> None:
        self.state, self.failures, self.probing = CircuitState.CLOSED, 0, False

    def failed(self) -> None:
        self.failures += 1
        self.probing = False
        if self.state is CircuitState.HALF_OPEN or self.failures >= self.failure_threshold:
            self.state, self.opened_at = CircuitState.OPEN, self.clock()

    def released(self) -> None:
        """A call ended without telling anything about the node (e.g. it was cancelled)."""
        self.probing = False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Up to `attempts` attempts in all; before retry k (0-based) a pause drawn uniformly
    from [0, min(max_delay_s, base_delay_s * 2**k)] ("full jitter": retries of many queries
    spread out instead of arriving together at a node that is coming back)."""

    attempts: int = 3
    base_delay_s: float = 0.05
    max_delay_s: float = 1.0

    def delay(self, retry: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.max_delay_s, self.base_delay_s * 2**retry))


@dataclass(frozen=True, slots=True)
class ResilienceSettings:
    max_in_flight: int = 16
    max_waiting: int = 32
    # In-flight slots of one node one researcher may hold; None: all of them.
    max_in_flight_per_applicant: int | None = None
    failure_threshold: int = 5
    reset_after_s: float = 10.0
    retry: RetryPolicy = RetryPolicy()
    # A timeout counts against a node only when the request had this much time, by the
    # node's latency class (none given: any time): a query whose researcher asked for a
    # short deadline says nothing about the node.
    full_timeout_s: Mapping[LatencyClass, float] = field(default_factory=dict)


def counts_against_node(outcome: NodeOutcome, timeout_s: float, full_timeout_s: float) -> bool:
    if outcome.status is NodeStatus.TIMEOUT:
        return timeout_s >= full_timeout_s
    if outcome.status is NodeStatus.ERROR:
        return outcome.error_code not in _QUESTION_ERRORS
    return outcome.status in (NodeStatus.UNAVAILABLE, NodeStatus.REJECTED)


CircuitChange = Callable[[NodeInfo, CircuitState], None]
"""Told the node and the state its circuit entered."""


@dataclass
class _NodeGuard:
    breaker: CircuitBreaker
    bulkhead: FairBulkhead


class ResilientNodeClient:
    """A `NodeClient` adding in-flight bounds, circuit breaking and safe retries to `inner`."""

    def __init__(
        self,
        inner: NodeClient,
        settings: ResilienceSettings = ResilienceSettings(),
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        on_circuit_change: CircuitChange | None = None,
    ) -> None:
        self._inner = inner
        self._settings = settings
        self._on_circuit_change = on_circuit_change
        self._clock = clock
        self._rng = rng or random.Random()  # jitter, not a secret
        self._guards: dict[str, _NodeGuard] = {}

    def circuit(self, node_id: str) -> CircuitState:
        guard = self._guards.get(node_id)
        return CircuitState.CLOSED if guard is None else guard.breaker.state

    def _guard(self, node: NodeInfo) -> _NodeGuard:
        guard = self._guards.get(node.node_id)
        if guard is None:
            s = self._settings
            guard = _NodeGuard(
                CircuitBreaker(s.failure_threshold, s.reset_after_s, clock=self._clock),
                FairBulkhead(s.max_in_flight, s.max_waiting, s.max_in_flight_per_applicant),
            )
            self._guards[node.node_id] = guard
        return guard

    async def query(
        self,
        node: NodeInfo,
        request: NodeRequest,
        *,
        approval_token: str,
        timeout: float,  # noqa: ASYNC109 - the transport's budget; the fan-out also bounds it
    ) -> NodeOutcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        started = time.perf_counter()
        guard = self._guard(node)
        j = node.jurisdiction

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        if not guard.breaker.admit():
            return NodeOutcome.failed(
                j,
                NodeStatus.UNAVAILABLE,
                f"not asked: the node failed {guard.breaker.failures} times in a row; "
                f"next try in {guard.breaker.retry_in():.1f} s",
                code=ErrorCode.CIRCUIT_OPEN,
                latency_ms=elapsed(),
            )
        outcome: NodeOutcome | None = None
        asked = False
        try:
            # The inner client honours its timeout; this also bounds the wait for a slot.
            async with asyncio.timeout_at(deadline), guard.bulkhead.slot(request.subject):
                asked = True
                outcome = await self._attempts(node, request, approval_token, deadline)
        except BulkheadFull:
            outcome = NodeOutcome.failed(
                j,
                NodeStatus.UNAVAILABLE,
                f"not asked: {self._settings.max_in_flight} requests to this node are in "
                "flight and others are waiting (the slots are shared fairly between "
                "researchers; a researcher with many requests waiting gives up the newest)",
                code=ErrorCode.NODE_BUSY,
            )
        except TimeoutError:
            outcome = NodeOutcome.failed(
                j,
                NodeStatus.TIMEOUT,
                f"no answer within {timeout:.1f} s"
                if asked
                else f"no free slot for this node within {timeout:.1f} s",
            )
        finally:
            # Only what the node did counts: not a wait for a slot, not a cancellation.
            self._record(node, guard.breaker, outcome if asked else None, timeout, request)
        return dataclasses.replace(outcome, latency_ms=elapsed())

    async def _attempts(
        self, node: NodeInfo, request: NodeRequest, approval_token: str, deadline: float
    ) -> NodeOutcome:
        loop = asyncio.get_running_loop()
        retry = self._settings.retry
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._inner.query(
                node,
                request,
                approval_token=approval_token,
                timeout=max(deadline - loop.time(), 0.0),
            )
            if not outcome.retryable or attempt >= retry.attempts:
                break
            pause = retry.delay(attempt - 1, self._rng)
            if loop.time() + pause + MIN_ATTEMPT_S >= deadline:
                break
            await asyncio.sleep(pause)
        if attempt > 1 and outcome.message is not None:
            outcome = dataclasses.replace(
                outcome, message=f"{outcome.message} ({attempt} attempts)"
            )
        return outcome

    def _record(
        self,
        node: NodeInfo,
        breaker: CircuitBreaker,
        outcome: NodeOutcome | None,
        timeout: float,
        request: NodeRequest,
    ) -> None:
        before = breaker.state
        if outcome is None:
            breaker.released()
        elif counts_against_node(
            outcome, timeout, self._settings.full_timeout_s.get(node.latency, 0.0)
        ):
            breaker.failed()
        elif outcome.status in (NodeStatus.OK, NodeStatus.DENIED, NodeStatus.UNKNOWN_CODE):
            breaker.succeeded()
        else:
            breaker.released()
        if breaker.state is not before:
            log.warning(
                "circuit to node %s (%s): %s -> %s after query %s",
                node.node_id,
                node.jurisdiction.value,
                before.value,
                breaker.state.value,
                request.query_id,
            )
            if self._on_circuit_change is not None:
                self._on_circuit_change(node, breaker.state)
