"""The gateway's aiohttp application: `POST /graphql`, `GET /healthz`, `GET /readyz`,
`GET /metrics` (`gateway.metrics`), and the query console when it is on (`gateway.console`).

Cleanup contexts, set up in this order and torn down in the reverse one, after in-flight
queries have drained (`serving.lifecycle`):

1. traces: flushes and shuts down the tracer provider, last, so that spans from every later
   teardown are exported too;
2. audit: the audit trail, resumed at start; closed after the last query is answered, its
   chain head signed, before the spans are flushed;
3. services: the HTTP session to the nodes, closed first;
4. policy reload: watches the policy files while the gateway runs (`policies.live`);
5. federation check: asks every node who it is and compares it with the federation file
   (`gateway.federation_check`), stopped before anything else.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import hdrs, web
from cross_web import HTTPException
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from opentelemetry import propagate
from opentelemetry.trace import TracerProvider
from redis.asyncio import Redis
from redis.exceptions import RedisError
from strawberry.aiohttp.views import GraphQLView
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData

from gateway.admission import Admission
from gateway.auth import Authenticator
from gateway.combine import Profiles
from gateway.console import install_console
from gateway.fairshare import FairShare
from gateway.federation import Federation, load_federation
from gateway.federation_check import FederationWatch
from gateway.graphql.context import GatewayContext
from gateway.graphql.limits import QueryBudget, cohort_fields
from gateway.graphql.operations import BAD_OPERATION_NAME, valid_operation_name
from gateway.graphql.schema import build_schema
from gateway.graphql.tracing import TRACER_NAME
from gateway.http import error_response, http_errors, refusal, retry_after
from gateway.live_policy import live_policies, profiles
from gateway.metrics import (
    METRICS,
    METRICS_PATH,
    CountedRateLimiter,
    GatewayMetrics,
    TimedAuditStore,
    metrics_view,
)
from gateway.node_watch import NodeWatch, WatchedNodeClient
from gateway.nodes import HttpNodeClient, NodeClient, create_session
from gateway.permits import PermitVerifier
from gateway.ratelimit import (
    LimitPolicy,
    Limits,
    RateGuard,
    RateLimiter,
    RedisRateLimiter,
    SqliteRateLimiter,
)
from gateway.regression_client import HttpRegressionClient, RegressionClient
from gateway.resilience import ResilienceSettings, ResilientNodeClient, RetryPolicy
from gateway.service import Services
from gateway.settings import GatewaySettings
from gateway.vetting import VettingNodeClient
from gateway.vocabulary import ConceptClient, HttpConceptClient
from gateway.worker_metrics import WorkerMetrics
from gateway.workers import audit_chain, worker_share
from oversight.audit.log import AuditLog
from oversight.audit.store import AuditStore
from oversight.audit.stores import open_store
from oversight.tracing import tracer_provider_from_env
from policies.live import LivePolicy
from policies.loader import PolicyFileError
from policies.policy_set import PolicySet
from schema.errors import ErrorCode, SettingsError, TesseraError
from schema.wire import PERMIT_HEADER
from serving.lifecycle import install as install_lifecycle
from serving.lifecycle import traces, while_running
from serving.prefork import reserve, serve_forked
from serving.run import listening_line, serve_app, serve_on
from trust.private_keys import load_signing_key
from trust.request_token import RequestSigner
from trust.store import connect_redis
from trust.tokens import TokenVerifier

log = logging.getLogger(__name__)

SERVICE_NAME: Final = "tessera-gateway"
GRAPHQL_PATH: Final = "/graphql"
# A question is a few kilobytes at most; the query model caps what it can hold anyway.
MAX_REQUEST_BYTES: Final = 256 * 1024
# Without any policy for the jurisdictions asked (the policy engine refuses those anyway).
DEFAULT_LIMITS: Final = Limits(per_researcher_per_minute=60, per_approval_per_day=1000)
NO_CAP: Final = 2**31


@dataclass
class _State:
    """Filled when the app starts: what needs a running event loop."""

    services: Services | None = None
    audit: AuditLog | None = None
    session: aiohttp.ClientSession | None = None
    redis: Redis | None = None


class BatchTooLarge(Exception):
    pass


class BadOperationName(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Observability:
    """The tracer provider and the audit trail's store, and whether the app made (and so
    owns and closes) the store (`serving.lifecycle.traces` closes a provider it made)."""

    provider: TracerProvider
    store: AuditStore
    owns_store: bool
    audit_key: Ed25519PrivateKey


SETTINGS: Final = web.AppKey("tessera.gateway.settings", GatewaySettings)
FEDERATION: Final = web.AppKey("tessera.gateway.federation", Federation)
POLICIES: Final = web.AppKey("tessera.gateway.policies", LivePolicy[PolicySet])
STATE: Final = web.AppKey("tessera.gateway.state", _State)
OBSERVABILITY: Final = web.AppKey("tessera.gateway.observability", _Observability)
NODE_WATCH: Final = web.AppKey("tessera.gateway.node_watch", NodeWatch)
WORKER: Final = web.AppKey("tessera.gateway.worker", int)


class GatewayView(GraphQLView[GatewayContext, None]):
    def __init__(self, *args: Any, max_batch: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_batch = max_batch

    async def get_context(
        self, request: web.Request, response: web.Response | web.WebSocketResponse
    ) -> GatewayContext:
        services = request.app[STATE].services
        if services is None:
            raise web.HTTPServiceUnavailable(text="starting")
        return GatewayContext(
            services=services,
            authorization=request.headers.get(hdrs.AUTHORIZATION),
            permit_headers=tuple(request.headers.getall(PERMIT_HEADER, ())),
            trace_parent=propagate.extract(request.headers),
            budget=QueryBudget(services.max_query_cost),
        )

    def decode_json(self, data: str | bytes) -> object:
        # orjson bounds nesting (depth 1024) and raises a JSONDecodeError the view turns into
        # a 400; the stdlib parser would hit Python's recursion limit and fail with a 500.
        decoded = orjson.loads(data)
        # Strawberry reads a request as an object, or a batch as an array of objects; any
        # other JSON would reach it as something it calls `.get` on.
        items = decoded if isinstance(decoded, list) else [decoded]
        if not items or not all(isinstance(item, dict) for item in items):
            raise json.JSONDecodeError("a GraphQL request is a JSON object", "", 0)
        if isinstance(decoded, list) and len(decoded) > self.max_batch:
            raise BatchTooLarge
        if not all(valid_operation_name(item.get("operationName")) for item in items):
            raise BadOperationName
        return decoded

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: web.Response,
    ) -> web.Response:
        sub_response.body = self.encode_json(response_data)
        sub_response.content_type = "application/json"
        answers = response_data if isinstance(response_data, list) else [response_data]
        errors = [e for answer in answers for e in answer.get("errors") or ()]
        wait = retry_after(e for e in errors if isinstance(e, dict))
        if wait is not None:
            sub_response.headers[hdrs.RETRY_AFTER] = str(wait)
        return sub_response

    async def execute_operation(
        self,
        request: web.Request,
        request_adapter: Any,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: GatewayContext,
        root_value: None,
        sub_response: web.Response,
    ) -> Any:
        # Every question of the request, each operation of a batch summed, is counted before
        # any of them runs: the researcher's share admits or refuses them together.
        items = request_data if isinstance(request_data, list) else [request_data]
        context.cohorts = sum(cohort_fields(d.query, d.operation_name) for d in items)
        try:
            return await super().execute_operation(
                request, request_adapter, request_data, context, root_value, sub_response
            )
        finally:
            context.close()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self.run(request=request)
        except HTTPException as e:
            return refusal(e.status_code, e.reason)
        except BatchTooLarge:
            return refusal(400, "Too many operations")
        except BadOperationName:
            return error_response(400, ErrorCode.GRAPHQL_VALIDATION_FAILED, BAD_OPERATION_NAME)


def create_app(
    settings: GatewaySettings,
    *,
    node_client: NodeClient | None = None,
    tracer_provider: TracerProvider | None = None,
    audit_store: AuditStore | None = None,
    rate_limiter: RateLimiter | None = None,
    policy_set: PolicySet | None = None,
    concept_client: ConceptClient | None = None,
    worker: int = 0,
    metrics_dir: Path | None = None,
) -> web.Application:
    """The gateway for `settings`, as worker number `worker` of TESSERA_GATEWAY_PROCESSES
    (`gateway.workers`: the audit chain it writes, its share of the limits in memory), its
    metrics shared with the other workers' through `metrics_dir` (`gateway.worker_metrics`). The
    federation file, its keys and the policies are loaded now, so a bad file fails here; the
    HTTP session to the nodes is opened and the audit trail resumed when the app starts.
    Given a `node_client` (e.g. a `MockNodeClient`), a `tracer_provider` or an
    `audit_store`, the app uses it instead of its own, and leaves closing it to the caller; a
    `rate_limiter` replaces the real one, and `policy_set` the policies of the settings (then
    fixed: only the settings' policy files are reloaded); with a `node_client`, vocabulary
    look-ups go to `concept_client` (none: not offered). JWKS refresh, Redis and the policy
    reload start with the app."""
    federation = load_federation(settings.federation)
    audit_key = (
        load_signing_key(
            settings.audit_key,
            setting=settings.variable("audit_key"),
            error=SettingsError,
        )
        if settings.audit_key
        else federation.signing_key
    )
    app = web.Application(
        client_max_size=MAX_REQUEST_BYTES, middlewares=[http_errors(MAX_REQUEST_BYTES)]
    )
    app[SETTINGS] = settings
    app[FEDERATION] = federation
    app[WORKER] = worker
    if policy_set is not None:
        policies = LivePolicy.fixed(policy_set, name="gateway policies")
    else:
        try:
            policies = live_policies(settings.policies)
        except PolicyFileError as exc:
            # As the connector says it: one line per problem, joined (`tessera.cli`).
            problems = "; ".join(str(exc).splitlines())
            raise SettingsError(
                f"TESSERA_GATEWAY_POLICIES ({settings.policies or 'the shipped policies'}): "
                f"{problems}"
            ) from None
    app[POLICIES] = policies
    app[STATE] = _State()
    app[OBSERVABILITY] = _Observability(
        provider=tracer_provider or tracer_provider_from_env(SERVICE_NAME),
        store=audit_store or open_store(settings.audit_db),
        owns_store=audit_store is None,
        audit_key=audit_key,
    )
    app[METRICS] = GatewayMetrics()
    app[NODE_WATCH] = watch = NodeWatch(federation.nodes.values())
    lifecycle = install_lifecycle(app)
    if settings.processes > 1:
        # Which worker answered: the one that accepted the connection.
        lifecycle.add_field("worker", lambda: worker)
    app.cleanup_ctx.append(traces(app[OBSERVABILITY].provider, owned=tracer_provider is None))
    app.cleanup_ctx.append(_audit)
    limits = LimitPolicy(
        default=DEFAULT_LIMITS,
        # The settings only ever tighten: a limit they leave unset caps nothing.
        cap=Limits(
            settings.rate_per_researcher_per_minute or NO_CAP,
            settings.rate_per_approval_per_day or NO_CAP,
        ),
    )
    app.cleanup_ctx.append(_services(node_client, rate_limiter, limits, concept_client))
    app.cleanup_ctx.append(
        while_running(lambda app: app[POLICIES].watching(settings.policy_reload_s))
    )

    async def services_started() -> str | None:
        return None if app[STATE].services is not None else "starting"

    async def audit_readable() -> str | None:
        audit = app[STATE].audit
        if audit is None:
            return "starting"
        try:
            await audit.store.head(audit.chain)
        except TesseraError as exc:
            return f"the audit trail cannot be read: {exc.message}"
        return None

    # The signing key, the issuers' keys and the policies were loaded above: a bad one fails
    # create_app, so readiness only has to watch what can come and go.
    async def redis_answers() -> str | None:
        redis = app[STATE].redis
        if redis is None:
            return None
        try:
            await redis.ping()
        except RedisError:
            return "Redis does not answer"
        return None

    async def issuer_keys() -> str | None:
        # An issuer whose keys are not loaded yet only has its own tokens refused; with none
        # loaded at all, no researcher can be served.
        issuers = federation.issuers.values()
        if issuers and not any(issuer.keys.key_set() for issuer in issuers):
            return "no token issuer's keys are loaded"
        return None

    async def nodes_may_answer() -> str | None:
        # Ready while a quorum is possible: some node answers, or has not been asked yet.
        # With none, the nodes are probed here: no query would find one that came back.
        session = app[STATE].session
        if watch.readiness() is not None and session is not None:
            await watch.probe(session)
        return watch.readiness()

    lifecycle.add_detail("policy", policies.details)
    if node_client is None:
        # Real nodes: does each agree with the federation file (ids, issuer, audience, keys)?
        federation_watch = FederationWatch(federation)
        app.cleanup_ctx.append(_federation_watch(federation_watch))
        lifecycle.add_check("federation", federation_watch.readiness)
        lifecycle.add_detail("federation", federation_watch.details)
    lifecycle.add_detail("nodes", watch.describe)
    lifecycle.add_detail("quorum", watch.summary)
    lifecycle.add_check("nodes", nodes_may_answer)
    lifecycle.add_check("issuers", issuer_keys)
    lifecycle.add_check("node_client", services_started)
    lifecycle.add_check("audit", audit_readable)
    lifecycle.add_check("redis", redis_answers)

    view = GatewayView(
        schema=build_schema(
            tracer_provider=app[OBSERVABILITY].provider,
            introspection=settings.introspection,
            max_batch=settings.max_batch,
        ),
        # The query console (gateway.console) replaces strawberry's GraphiQL page, which
        # loads its scripts from a CDN.
        graphql_ide=None,
        allow_queries_via_get=False,
        subscription_protocols=(),
        max_batch=settings.max_batch,
    )
    app.router.add_post(GRAPHQL_PATH, view)
    if metrics_dir is None:
        app.router.add_get(METRICS_PATH, metrics_view)
    else:
        shared = WorkerMetrics(app[METRICS], metrics_dir, worker)
        app.cleanup_ctx.append(shared.keep_writing)
        app.router.add_get(METRICS_PATH, shared.view)
    if settings.console:
        install_console(
            app, graphql_path=GRAPHQL_PATH, demo_credentials=settings.console_demo_credentials
        )
    return app


def node_client_stack(
    transport: NodeClient,
    settings: GatewaySettings,
    profiles: Profiles,
    *,
    metrics: GatewayMetrics,
    watch: NodeWatch,
) -> NodeClient:
    """What the fan-out talks to: the transport (HTTP, or a fake in tests), each answer vetted
    against the node's published rules, behind per-node bounds, breaker and retries; every
    outcome counted, logged when it is a failure, and kept as the node's last known state."""
    resilient = ResilientNodeClient(
        VettingNodeClient(transport, profiles),
        ResilienceSettings(
            max_in_flight=settings.node_max_in_flight,
            max_waiting=settings.node_max_waiting,
            max_in_flight_per_applicant=settings.node_share,
            failure_threshold=settings.circuit_failures,
            reset_after_s=settings.circuit_reset_s,
            retry=RetryPolicy(attempts=settings.node_retry_attempts),
            full_timeout_s=settings.full_timeouts,
        ),
        on_circuit_change=metrics.circuit_changed,
    )
    watch.circuit = resilient.circuit
    metrics.watch_circuits(
        lambda: [
            ({"node": node_id, "jurisdiction": n.jurisdiction.value}, resilient.circuit(node_id))
            for node_id, n in watch.nodes.items()
        ]
    )
    return WatchedNodeClient(resilient, watch, metrics, full_timeout_s=settings.full_timeouts)


async def _audit(app: web.Application) -> AsyncIterator[None]:
    seen, federation = app[OBSERVABILITY], app[FEDERATION]
    audit = AuditLog(
        TimedAuditStore(seen.store, app[METRICS]),
        audit_chain(federation.gateway_id, app[WORKER]),
        signing_key=seen.audit_key,
    )
    await audit.start()
    app[STATE].audit = audit
    try:
        yield
    finally:
        app[STATE].audit = None
        await audit.close()
        if seen.owns_store:
            await seen.store.close()


def _services(
    node_client: NodeClient | None,
    rate_limiter: RateLimiter | None,
    limits: LimitPolicy,
    concept_client: ConceptClient | None = None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        federation, settings, seen = app[FEDERATION], app[SETTINGS], app[OBSERVABILITY]
        state, processes = app[STATE], app[SETTINGS].processes
        audit = state.audit
        assert audit is not None  # the audit context starts first
        for source in federation.refreshing:
            await source.start()
        limiter = rate_limiter
        own_limiter: SqliteRateLimiter | None = None
        if limiter is None and settings.redis_url:
            state.redis = connect_redis(settings.redis_url)
            limiter = RedisRateLimiter(state.redis, prefix=settings.redis_prefix)
        elif limiter is None:
            assert settings.rate_db is not None  # filled in by GatewaySettings
            limiter = own_limiter = SqliteRateLimiter(settings.rate_db)
            await own_limiter.open()  # a path it cannot write stops the gateway here
        session: aiohttp.ClientSession | None = None
        transport, concepts = node_client, concept_client
        regressions: RegressionClient | None = None
        if transport is None:
            session = create_session(
                connections_per_node=settings.node_max_in_flight,
                keepalive_s=settings.node_keepalive_s,
            )
            signer = RequestSigner(
                issuer=federation.gateway_id,
                kid=federation.signing_kid,
                key=federation.signing_key,
            )
            transport = HttpNodeClient(session, signer, question_tokens=settings.question_tokens)
            concepts = HttpConceptClient(session, signer)
            regressions = HttpRegressionClient(session, signer)
        app[STATE].session = session
        policies = app[POLICIES]
        app[STATE].services = Services(
            federation=federation,
            authenticator=Authenticator(audience=federation.gateway_id, issuers=federation.issuers),
            node_client=node_client_stack(
                transport,
                settings,
                profiles(policies),
                metrics=app[METRICS],
                watch=app[NODE_WATCH],
            ),
            policies=policies,
            permits=PermitVerifier(
                TokenVerifier(audience=federation.gateway_id, issuers=federation.issuers.values())
            ),
            rate_guard=RateGuard(CountedRateLimiter(limiter, app[METRICS]), limits),
            deadline_s=settings.deadline_s,
            node_timeouts=settings.node_timeouts,
            max_query_cost=settings.max_query_cost,
            audit=audit,
            tracer=seen.provider.get_tracer(TRACER_NAME),
            max_deadline_s=settings.max_deadline_s,
            partial_pools=settings.partial_pools,
            concept_client=concepts,
            regression_client=regressions,
            fair_share=FairShare(
                per_researcher=worker_share(settings.max_cohorts_per_researcher, processes),
                per_application=worker_share(settings.max_cohorts_per_application, processes),
                on_refused=app[METRICS].fair_share_refused,
            ),
            admission=Admission(
                active=settings.max_active_cohorts,
                waiting=settings.max_waiting_cohorts,
                on_refused=app[METRICS].admission_refused,
            ),
        )
        try:
            yield
        finally:
            state.services = None
            for source in federation.refreshing:
                await source.stop()
            if state.redis is not None:
                await state.redis.aclose()
                state.redis = None
            if own_limiter is not None:
                await own_limiter.close()
            if session is not None:
                await session.close()
                log.info("closed the connections to the nodes")

    return lifetime


def _federation_watch(
    watch: FederationWatch,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        await watch.start()
        try:
            yield
        finally:
            await watch.stop()

    return lifetime


def serve(settings: GatewaySettings) -> int:
    """Run the gateway until SIGTERM/SIGINT, then shut down gracefully (`serving.lifecycle`);
    prints one line once it accepts connections. With several processes, a parent reserves
    the port and supervises the workers (`serving.prefork`); the exit status is the
    service's."""
    if settings.processes == 1:
        serve_app(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            announce="gateway",
            path=GRAPHQL_PATH,
            refusal=_refusal,
            shutdown_timeout_s=settings.shutdown_timeout_s,
        )
        log.info("gateway stopped")
        return 0

    def worker(number: int, listen: Callable[[], socket.socket], ready: Callable[[], None]) -> None:
        app = create_app(settings, worker=number, metrics_dir=metrics_dir)
        serve_on(
            app,
            sock=listen(),
            ready=ready,
            refusal=_refusal,
            shutdown_timeout_s=settings.shutdown_timeout_s,
        )
        log.info("gateway worker %d stopped", number)

    # A federation file that cannot be loaded stops the start here, once, before any worker.
    load_federation(settings.federation)
    metrics_dir = Path(tempfile.mkdtemp(prefix="tessera-gateway-metrics-"))
    try:
        with reserve(settings.host, settings.port) as sock:
            status = serve_forked(
                settings.processes,
                sock,
                worker,
                announce_line=listening_line("gateway", sock, settings.host, GRAPHQL_PATH),
            )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("gateway stopped")
    return status


def _refusal(status: int, code: ErrorCode, message: str) -> web.Response:
    # The gateway's JSON error, for what aiohttp refuses before the app runs.
    return error_response(status, code, message)
