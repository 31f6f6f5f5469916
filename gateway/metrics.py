"""The gateway's metrics: OpenTelemetry instruments read by a Prometheus reader, served as
`GET /metrics` in the Prometheus text format.

What is measured is the federation's health, never a researcher's activity: every label is
a node id, a jurisdiction, a node status, a stable error code, a circuit state or a fixed
outcome name. No query id, researcher, approval or value appears, so the endpoint needs no
token (like `/readyz`); expose it to the monitoring network only, as any operations port.

- `tessera_gateway_node_requests_total{node, jurisdiction, status, code}`: node requests
  by outcome (`code` empty when the outcome has none);
- `tessera_gateway_node_latency_seconds{node, jurisdiction, status}`: their latency;
- `tessera_gateway_circuit_state{node, jurisdiction}`: 0 closed, 1 half-open, 2 open;
- `tessera_gateway_circuit_changes_total{node, jurisdiction, state}`: transitions;
- `tessera_gateway_rate_limit_refusals_total{outcome}`: queries refused by the rate limits
  (`limited`) or because the limiter could not answer (`unavailable`);
- `tessera_gateway_fair_share_refusals_total{share}`: requests refused at once because they
  would exceed a researcher's or an application's share of questions in flight
  (`researcher`, `application`: TOO_MANY_IN_FLIGHT);
- `tessera_gateway_admission_refusals_total{reason}`: questions refused a turn to fan out
  (`full`: no place to wait; `waited`: the deadline passed waiting; GATEWAY_BUSY);
- `tessera_gateway_audit_write_seconds{outcome}`: time to append a batch of entries to the
  audit trail (`ok`, `failed`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from aiohttp import web
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.federation import NodeInfo
from gateway.ratelimit import Bucket, RateLimiter
from gateway.resilience import CircuitState
from oversight.audit.store import MAX_PAGE, AuditQuery, AuditStore
from schema.audit.chain import SignedHead
from schema.audit.entry import AuditEntry, AuditRecord, StoredEntry
from schema.errors import TesseraError

METER_NAME: Final = "tessera.gateway"
METRICS_PATH: Final = "/metrics"
# Node round trips: from a few milliseconds to the longest deadline.
LATENCY_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
AUDIT_BUCKETS_S: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
CIRCUIT_VALUES: Final = {"closed": 0, "half-open": 1, "open": 2}

CircuitStates = Callable[[], Iterable[tuple[Mapping[str, str], str]]]
"""Each node's labels and its circuit state now."""


class GatewayMetrics:
    """One set of instruments with its own registry (several apps in one test process do not
    share counts)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._reader = PrometheusMetricReader(
            disable_target_info=True, scope_info_enabled=False, registry=self.registry
        )
        # Read on demand only: nothing to flush at exit.
        self._provider = MeterProvider(metric_readers=[self._reader], shutdown_on_exit=False)
        meter = self._provider.get_meter(METER_NAME)
        self.node_requests = meter.create_counter(
            "tessera.gateway.node.requests", unit="{request}", description="Node requests."
        )
        self.node_latency = meter.create_histogram(
            "tessera.gateway.node.latency",
            unit="s",
            description="Latency of node requests.",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
        )
        self.circuit_changes = meter.create_counter(
            "tessera.gateway.circuit.changes",
            unit="{change}",
            description="Circuit breaker transitions, by the state entered.",
        )
        self.rate_limit_refusals = meter.create_counter(
            "tessera.gateway.rate_limit.refusals",
            unit="{query}",
            description="Queries refused by the rate limits.",
        )
        self.fair_share_refusals = meter.create_counter(
            "tessera.gateway.fair_share.refusals",
            unit="{request}",
            description="Requests refused for exceeding a share of questions in flight.",
        )
        self.admission_refusals = meter.create_counter(
            "tessera.gateway.admission.refusals",
            unit="{question}",
            description="Questions refused a turn to fan out (GATEWAY_BUSY).",
        )
        self.audit_write = meter.create_histogram(
            "tessera.gateway.audit.write",
            unit="s",
            description="Time to append a batch of entries to the audit trail.",
            explicit_bucket_boundaries_advisory=AUDIT_BUCKETS_S,
        )
        self._circuits: CircuitStates = lambda: ()
        meter.create_observable_gauge(
            "tessera.gateway.circuit.state",
            callbacks=[self._observe_circuits],
            description="Circuit breaker state per node: 0 closed, 1 half-open, 2 open.",
        )

    def fair_share_refused(self, share: str) -> None:
        self.fair_share_refusals.add(1, {"share": share})

    def admission_refused(self, reason: str) -> None:
        self.admission_refusals.add(1, {"reason": reason})

    def circuit_changed(self, node: NodeInfo, state: CircuitState) -> None:
        self.circuit_changes.add(
            1,
            {"node": node.node_id, "jurisdiction": node.jurisdiction.value, "state": state.value},
        )

    def watch_circuits(self, states: CircuitStates) -> None:
        self._circuits = states

    def _observe_circuits(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(CIRCUIT_VALUES[s], dict(labels)) for labels, s in self._circuits()]

    def render(self) -> bytes:
        return generate_latest(self.registry)


METRICS: Final = web.AppKey("tessera.gateway.metrics", GatewayMetrics)


async def metrics_view(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


class CountedRateLimiter:
    """A `RateLimiter` counting its refusals."""

    def __init__(self, inner: RateLimiter, metrics: GatewayMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def acquire(self, buckets: Sequence[Bucket]) -> float:
        try:
            wait = await self._inner.acquire(buckets)
        except TesseraError:
            self._metrics.rate_limit_refusals.add(1, {"outcome": "unavailable"})
            raise
        if wait > 0:
            self._metrics.rate_limit_refusals.add(1, {"outcome": "limited"})
        return wait


class TimedAuditStore:
    """An `AuditStore` timing its appends; everything else passes through."""

    def __init__(self, inner: AuditStore, metrics: GatewayMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def append(self, chain: str, records: Sequence[AuditRecord]) -> list[AuditEntry]:
        started = time.perf_counter()
        outcome = "failed"
        try:
            entries = await self._inner.append(chain, records)
            outcome = "ok"
            return entries
        finally:
            self._metrics.audit_write.record(time.perf_counter() - started, {"outcome": outcome})

    async def head(self, chain: str) -> tuple[int, str]:
        return await self._inner.head(chain)

    async def entries(
        self, chain: str, *, after: int = 0, limit: int = MAX_PAGE
    ) -> list[StoredEntry]:
        return await self._inner.entries(chain, after=after, limit=limit)

    async def search(self, chain: str, query: AuditQuery) -> list[StoredEntry]:
        return await self._inner.search(chain, query)

    async def add_head(self, head: SignedHead) -> None:
        await self._inner.add_head(head)

    async def heads(self, chain: str) -> list[SignedHead]:
        return await self._inner.heads(chain)

    async def chains(self) -> list[str]:
        return await self._inner.chains()

    async def close(self) -> None:
        await self._inner.close()
