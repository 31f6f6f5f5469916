"""What the gateway knows of each node, for operators: every outcome of a node request is
counted (`gateway.metrics`), a failure or refusal is logged at WARNING (node, status, code,
query id: never a value, never token material), and each node's last known state is kept
for `/readyz`.

States: `unknown` (not asked since the gateway started), `answering` (its last answer was
usable, or a refusal of the question or the researcher's permit, which says nothing of the
node), `refusing` (it refuses the gateway's requests: WRONG_NODE, UNKNOWN_KEY, a failing
database, ...), `not answering` (unreachable, cut off, or silent for a full node timeout) and
`rejected` (it answered, and the gateway refused the answer). A request the gateway did not
send (circuit open, node busy) or a time-out under a researcher's short deadline leaves the
state as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import aiohttp

from gateway.federation import NodeInfo
from gateway.latency import LatencyClass
from gateway.metrics import GatewayMetrics
from gateway.nodes import NodeClient, NodeOutcome
from gateway.resilience import CircuitState
from schema.codes import NodeStatus
from schema.errors import ErrorCode
from schema.wire import READY_PATH, NodeRequest

log = logging.getLogger(__name__)

# Refusals caused by the question or by the researcher's permit, not by the node.
_CALLER_CODES: Final = frozenset(
    {
        ErrorCode.BAD_REQUEST,
        ErrorCode.BODY_TOO_LARGE,
        ErrorCode.POOL_REFUSED,
        ErrorCode.APPROVAL_REQUIRED,
        ErrorCode.APPROVAL_INVALID,
        ErrorCode.APPROVAL_MISMATCH,
        ErrorCode.QUESTION_TOO_COSTLY,
    }
)
# Outcomes of requests never sent.
_NOT_SENT: Final = frozenset({ErrorCode.CIRCUIT_OPEN, ErrorCode.NODE_BUSY})
# A node's message goes into the log as a bounded, escaped string.
MAX_LOGGED_MESSAGE: Final = 200
PROBE_TIMEOUT_S: Final = 1.0


class NodeState(StrEnum):
    UNKNOWN = "unknown"
    ANSWERING = "answering"
    REFUSING = "refusing"
    NOT_ANSWERING = "not answering"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class _Last:
    state: NodeState
    what: str  # status and code, or how it was learnt
    at: float  # monotonic


def classify(outcome: NodeOutcome, *, full_timeout: bool) -> NodeState | None:
    """The state an outcome shows, or None when it shows nothing new about the node."""
    code = outcome.error_code
    if code in _NOT_SENT:
        return None
    match outcome.status:
        case NodeStatus.OK | NodeStatus.DENIED | NodeStatus.UNKNOWN_CODE:
            return NodeState.ANSWERING
        case NodeStatus.ERROR:
            return NodeState.ANSWERING if code in _CALLER_CODES else NodeState.REFUSING
        case NodeStatus.TIMEOUT:
            return NodeState.NOT_ANSWERING if full_timeout else None
        case NodeStatus.UNAVAILABLE:
            return NodeState.NOT_ANSWERING
        case NodeStatus.REJECTED:
            return NodeState.REJECTED


Circuits = Callable[[str], CircuitState]


class NodeWatch:
    """The last known state of each node of the federation."""

    def __init__(
        self,
        nodes: Iterable[NodeInfo],
        *,
        circuit: Circuits = lambda node_id: CircuitState.CLOSED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nodes = {n.node_id: n for n in nodes}
        self._last: dict[str, _Last] = {}
        self.circuit = circuit
        self._clock = clock

    def record(self, node: NodeInfo, outcome: NodeOutcome, *, full_timeout: bool) -> None:
        state = classify(outcome, full_timeout=full_timeout)
        if state is not None:
            what = outcome.status.value
            if outcome.error_code is not None:
                what += f" {outcome.error_code.value}"
            self._last[node.node_id] = _Last(state, what, self._clock())

    def state(self, node_id: str) -> NodeState:
        last = self._last.get(node_id)
        return NodeState.UNKNOWN if last is None else last.state

    def possibly_answering(self) -> list[str]:
        """Nodes that may answer a query now: answering, or not asked yet."""
        return [
            n
            for n in self.nodes
            if self.state(n) in (NodeState.ANSWERING, NodeState.UNKNOWN)
            and self.circuit(n) is not CircuitState.OPEN
        ]

    def describe(self) -> dict[str, str]:
        """One line per node: `<state> (<status> [<code>] <n> s ago); circuit <state>;
        latency <class>`."""
        now = self._clock()
        lines = {}
        for node_id in self.nodes:
            last = self._last.get(node_id)
            seen = (
                "not asked since the gateway started"
                if last is None
                else f"{last.what} {now - last.at:.0f} s ago"
            )
            lines[node_id] = (
                f"{self.state(node_id).value} ({seen}); circuit {self.circuit(node_id).value}; "
                f"latency {self.nodes[node_id].latency.value}"
            )
        return lines

    def summary(self) -> dict[str, str]:
        answering = self.possibly_answering()
        others = [n for n in self.nodes if n not in answering]
        return {
            "answering or not asked yet": ", ".join(answering) or "none",
            "not answering": ", ".join(others) or "none",
        }

    async def probe(self, session: aiohttp.ClientSession) -> None:
        """Ask each node that is not known to answer whether it is ready (`GET /readyz`, no
        query, no token): a gateway that no node answers would otherwise never learn that
        one is back, since it is asked no queries while it says it is not ready."""

        async def ready(node: NodeInfo) -> None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(
                    node.url + READY_PATH,
                    timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S),
                    allow_redirects=False,
                ) as response:
                    if response.status == 200:
                        self._last[node.node_id] = _Last(
                            NodeState.ANSWERING, "ready when probed", self._clock()
                        )

        answering = set(self.possibly_answering())
        await asyncio.gather(*(ready(n) for n_id, n in self.nodes.items() if n_id not in answering))

    def readiness(self) -> str | None:
        """None while some node may answer (a quorum may be possible); else why not."""
        if not self.nodes or self.possibly_answering():
            return None
        return "no node answers: " + ", ".join(f"{n} {self.state(n).value}" for n in self.nodes)


class WatchedNodeClient:
    """A `NodeClient` that counts, times and logs every outcome of `inner` and keeps each
    node's last known state in `watch`."""

    def __init__(
        self,
        inner: NodeClient,
        watch: NodeWatch,
        metrics: GatewayMetrics,
        *,
        full_timeout_s: Mapping[LatencyClass, float],
    ) -> None:
        self._inner = inner
        self._watch = watch
        self._metrics = metrics
        self._full_timeout_s = full_timeout_s

    async def query(
        self,
        node: NodeInfo,
        request: NodeRequest,
        *,
        approval_token: str,
        timeout: float,  # noqa: ASYNC109 - the transport's budget; the fan-out also bounds it
    ) -> NodeOutcome:
        outcome = await self._inner.query(
            node, request, approval_token=approval_token, timeout=timeout
        )
        full = timeout >= self._full_timeout_s.get(node.latency, 0.0)
        self._watch.record(node, outcome, full_timeout=full)
        code = outcome.error_code.value if outcome.error_code is not None else ""
        labels = {"node": node.node_id, "jurisdiction": node.jurisdiction.value}
        status = {**labels, "status": outcome.status.value}
        self._metrics.node_requests.add(1, {**status, "code": code})
        if outcome.latency_ms is not None:
            self._metrics.node_latency.record(outcome.latency_ms / 1000, status)
        if outcome.status not in (NodeStatus.OK, NodeStatus.DENIED, NodeStatus.UNKNOWN_CODE):
            # While a circuit is open every query would say so: its opening was the warning.
            quiet = outcome.error_code is ErrorCode.CIRCUIT_OPEN
            log.log(
                logging.INFO if quiet else logging.WARNING,
                "query %s: node %s (%s) %s%s: %r",
                request.query_id,
                node.node_id,
                node.jurisdiction.value,
                outcome.status.value,
                f" {code}" if code else "",
                (outcome.message or "")[:MAX_LOGGED_MESSAGE],
            )
        return outcome
