"""The connector's HTTP service (aiohttp): the routes of `schema.wire`."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import orjson
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from opentelemetry import propagate
from opentelemetry.trace import TracerProvider
from pydantic import BaseModel

from connectors.answers import SqliteAnswers
from connectors.backends import Backend, BackendOptions, open_backend
from connectors.errors import BadRequest, BodyTooLarge, http_status
from connectors.ledger import FileLedger, Ledger
from connectors.node_policy import NodePolicy, live_node_policy
from connectors.noise import NoiseSource
from connectors.pool_peers import PoolKeyError, PoolKeys
from connectors.regression import RegressionService
from connectors.service import QueryService
from connectors.settings import ConnectorSettings
from connectors.trust_anchors import NodeTrust, node_trust
from oversight.audit.log import AuditLog
from oversight.audit.store import AuditStore
from oversight.audit.stores import open_store
from oversight.tracing import tracer_provider_from_env
from policies.live import LivePolicy
from policies.loader import PolicyFileError
from policies.policy_set import NodeLayerMismatch, NoPolicy
from schema.errors import ErrorCode, SettingsError, TesseraError
from schema.regression import REGRESSION_PATH
from schema.wire import (
    APPROVAL_HEADER,
    BODY_SALT_HEADER,
    CONCEPTS_PATH,
    CONTENT_TYPE,
    MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES,
    QUERY_PATH,
    GatewayKeyId,
    NodeError,
    NodeIdentity,
)
from serving.lifecycle import install as install_lifecycle
from serving.lifecycle import traces, while_running
from serving.run import serve_app
from trust.http_edge import BODY_ERRORS, body_refused
from trust.keys import thumbprint
from trust.private_keys import load_pooling_key, load_signing_key
from trust.request_token import RequestVerifier

log = logging.getLogger(__name__)

SETTINGS: Final = web.AppKey("tessera.connector.settings", ConnectorSettings)
SERVICE: Final = web.AppKey("tessera.connector.service", QueryService)
REGRESSION: Final = web.AppKey("tessera.connector.regression", RegressionService)
BACKEND: Final = web.AppKey[Backend]("tessera.connector.backend")
AUDIT_STORE: Final = web.AppKey[AuditStore]("tessera.connector.audit_store")
TRACER_NAME: Final = "tessera.connector"
TRUST: Final = web.AppKey("tessera.connector.trust", NodeTrust)


def _dump(payload: BaseModel | dict[str, Any]) -> bytes:
    data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    return orjson.dumps(data)


def _json(payload: BaseModel | dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=_dump(payload), status=status, content_type=CONTENT_TYPE)


def _error(code: ErrorCode, message: str, status: int) -> web.Response:
    return _json(NodeError(code=code, message=message[:512]), status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a `NodeError` body: never a stack trace, SQL or value."""
    try:
        return await handler(request)
    except TesseraError as exc:
        return _error(exc.code, exc.message, http_status(exc))
    except web.HTTPRequestEntityTooLarge:
        return _error(ErrorCode.BODY_TOO_LARGE, _too_large().message, 413)
    except BODY_ERRORS as exc:
        status, code, message = body_refused(exc)
        return _error(code, message, status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(ErrorCode.BAD_REQUEST, exc.reason, exc.status)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error(ErrorCode.INTERNAL, "internal error", 500)


def _too_large() -> BodyTooLarge:
    return BodyTooLarge(f"request body exceeds {MAX_REQUEST_BYTES} bytes")


async def _query(request: web.Request) -> web.Response:
    body = b""
    try:
        if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
            raise _too_large()
        body = await request.read()
        answer = await request.app[SERVICE].handle(
            authorization=request.headers.get("Authorization"),
            body=body,
            body_salt=request.headers.get(BODY_SALT_HEADER),
            approval_token=request.headers.get(APPROVAL_HEADER),
            trace_parent=propagate.extract(request.headers),
        )
        payload = _dump(answer)
        if len(payload) > MAX_RESPONSE_BYTES:
            # The gateway would refuse it anyway; say why instead.
            raise BadRequest(
                f"the answer exceeds {MAX_RESPONSE_BYTES} bytes: ask for fewer or coarser tables"
            )
    except TesseraError as exc:
        _log_refusal(body, exc.code, http_status(exc))
        raise
    except web.HTTPRequestEntityTooLarge:
        _log_refusal(body, ErrorCode.BODY_TOO_LARGE, 413)
        raise
    return web.Response(body=payload, content_type=CONTENT_TYPE)


def _log_refusal(body: bytes, code: ErrorCode, status: int) -> None:
    # The code says what was refused; the message and the request may hold what the caller
    # sent, and stay out of the log.
    log.warning("refused query %s: %s (HTTP %d)", _query_id(body), code.value, status)


_QUERY_ID: Final = re.compile(r"[A-Za-z0-9-]{8,64}")


def _query_id(body: bytes) -> str:
    """The query id a request names, for the log, if it has the form of one (`schema.wire`);
    a refused request may be anything at all."""
    try:
        claimed = orjson.loads(body).get("query_id")
    except (orjson.JSONDecodeError, AttributeError):
        return "?"
    return claimed if isinstance(claimed, str) and _QUERY_ID.fullmatch(claimed) else "?"


async def _regression(request: web.Request) -> web.Response:
    """One iteration of a regression (`connectors.regression`): the same limits, signature,
    permit and refusals as a question."""
    body = b""
    try:
        if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
            raise _too_large()
        body = await request.read()
        part = await request.app[REGRESSION].handle(
            authorization=request.headers.get("Authorization"),
            body=body,
            approval_token=request.headers.get(APPROVAL_HEADER),
            trace_parent=propagate.extract(request.headers),
        )
    except TesseraError as exc:
        _log_refusal(body, exc.code, http_status(exc))
        raise
    return web.Response(body=_dump(part), content_type=CONTENT_TYPE)


async def _concepts(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
        raise _too_large()
    body = await request.read()
    answer = await request.app[SERVICE].concepts(
        authorization=request.headers.get("Authorization"), body=body
    )
    return _json(answer)


def node_identity(app: web.Application) -> NodeIdentity:
    """The node's public identity: its ids, the issuer and audience it expects, the gateway
    keys it trusts now (by kid and thumbprint), its HDAB and its datasets."""
    settings, service = app[SETTINGS], app[SERVICE]
    return NodeIdentity(
        node_id=settings.node_id,
        jurisdiction=settings.jurisdiction,
        gateway_issuer=settings.gateway_issuer,
        approval_audience=settings.approval_audience,
        gateway_keys=[
            GatewayKeyId(kid=k.kid, thumbprint=thumbprint(k.key))
            for k in app[TRUST].gateway_keys.key_set().keys
            if k.kid is not None
        ],
        hdab_issuer=settings.hdab_issuer,
        datasets=sorted(service.policies.current.datasets),
    )


def _backend(settings: ConnectorSettings) -> Backend:
    options = BackendOptions(
        threads=settings.threads, connections=settings.db_connections, layout=settings.layout
    )
    return open_backend(settings.target, options)


def _ledger(settings: ConnectorSettings, backend: Backend) -> Ledger:
    """The privacy ledger where the hub keeps it (`ConnectorSettings.ledger`)."""
    assert settings.state_dir is not None  # filled in by ConnectorSettings
    if settings.ledger == "beside":
        return FileLedger(settings.state_dir / "ledger")
    from connectors.backends.spark import SparkBackend
    from connectors.backends.spark_ledger import SparkLedger

    if not isinstance(backend, SparkBackend):
        raise SettingsError(f"{settings.describe('ledger')} engine needs a Spark backend")
    return SparkLedger(
        backend, schema=settings.ledger_schema, directory=settings.state_dir / "ledger-tables"
    )


def open_node_policy(settings: ConnectorSettings) -> LivePolicy[NodePolicy]:
    """The node's policy: EU baseline, its jurisdiction, its own layer, and its datasets.
    Loaded at start-up so that a broken or missing policy stops the connector instead of a
    query; reloaded while it runs (`_policy_reload`)."""
    try:
        return live_node_policy(
            settings.jurisdiction,
            settings.node_id,
            policies=settings.policies,
            node_layer=settings.node_policy,
        )
    except (PolicyFileError, NoPolicy, NodeLayerMismatch) as exc:
        where = settings.policies or "the shipped policies"
        problems = "; ".join(str(exc).splitlines())
        raise SettingsError(f"TESSERA_CONNECTOR_POLICIES ({where}): {problems}") from None


def _lifetime(owns_store: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        service = app[SERVICE]
        await app[TRUST].start()
        await service.audit.start()
        reason = await service.not_ready_reason()
        if reason is not None:
            log.warning("connector %s is not ready: %s", app[SETTINGS].jurisdiction.value, reason)
        yield
        await app[TRUST].stop()
        await service.audit.close()
        # The ledger first: one in the engine writes its last charges through the backend.
        await service.ledger.close()
        await app[BACKEND].close()
        await service.answers.close()
        if owns_store:
            await app[AUDIT_STORE].close()

    return lifetime


def create_app(
    settings: ConnectorSettings,
    *,
    backend: Backend | None = None,
    tracer_provider: TracerProvider | None = None,
    audit_store: AuditStore | None = None,
    noise: NoiseSource | None = None,
) -> web.Application:
    """The connector application. It owns `backend` (default: the one `settings.database`
    names, `connectors.backends.open_backend`) and closes it on cleanup; a `tracer_provider`
    or `audit_store` given is used instead of the app's own and left to the caller to close;
    `noise` replaces the discrete Gaussian (tests only). Raises `SettingsError` if a gateway
    key, an HDAB key or the audit key cannot be loaded."""
    trust = node_trust(settings)
    policy = open_node_policy(settings)
    audit_key = _audit_key(settings)
    pool_keys = _pool_keys(settings)
    if backend is None:
        backend = _backend(settings)
    verifier = RequestVerifier(
        keys=trust.gateway_keys,
        issuer=settings.gateway_issuer,
        audience=settings.node_id,
        replay_cache=trust.replay_cache,
    )
    provider = tracer_provider or tracer_provider_from_env(
        f"tessera-connector-{settings.jurisdiction.value.lower()}"
    )
    store = audit_store or open_store(settings.audit_db)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[_errors])
    app[SETTINGS] = settings
    app[BACKEND] = backend
    app[TRUST] = trust
    assert settings.state_dir is not None  # filled in by ConnectorSettings
    app[AUDIT_STORE] = store
    app[SERVICE] = QueryService(
        jurisdiction=settings.jurisdiction,
        backend=backend,
        verifier=verifier,
        approvals=trust.approvals,
        policy=policy,
        ledger=_ledger(settings, backend),
        answers=SqliteAnswers(settings.state_dir / "answers.sqlite3"),
        noise=noise,
        audit=AuditLog(store, f"node:{settings.node_id}", signing_key=audit_key),
        node_id=settings.node_id,
        tracer=provider.get_tracer(TRACER_NAME),
        query_timeout_s=settings.query_timeout_s,
        workers=settings.threads,
        pool_keys=pool_keys,
    )
    app[REGRESSION] = RegressionService(app[SERVICE])
    lifecycle = install_lifecycle(app)
    for name, check in app[SERVICE].readiness_checks().items():
        lifecycle.add_check(name, check)
    lifecycle.add_detail("policy", app[SERVICE].policies.details)
    # Who the node is and whom it trusts, ready or not: what `tessera federation check` and
    # the gateway compare with their federation file.
    lifecycle.add_field("identity", lambda: node_identity(app).model_dump(mode="json"))
    app.cleanup_ctx.append(traces(provider, owned=tracer_provider is None))
    app.cleanup_ctx.append(_lifetime(audit_store is None))
    app.cleanup_ctx.append(
        while_running(lambda app: app[SERVICE].policies.watching(settings.policy_reload_s))
    )
    app.router.add_post(QUERY_PATH, _query)
    app.router.add_post(REGRESSION_PATH, _regression)
    app.router.add_post(CONCEPTS_PATH, _concepts)
    return app


def _audit_key(settings: ConnectorSettings) -> Ed25519PrivateKey | None:
    if settings.audit_key is None:
        return None
    return load_signing_key(
        settings.audit_key,
        setting=settings.variable("audit_key"),
        error=SettingsError,
    )


def _pool_keys(settings: ConnectorSettings) -> PoolKeys | None:
    if settings.pool_key is None or settings.pool_peers is None:
        return None
    key = load_pooling_key(
        settings.pool_key,
        setting=settings.variable("pool_key"),
        error=SettingsError,
    )
    try:
        return PoolKeys.load(settings.node_id, key, settings.pool_peers)
    except PoolKeyError as exc:
        raise SettingsError(f"{settings.variable('pool_peers')}: {exc}") from None


def serve(settings: ConnectorSettings) -> None:
    """Run the connector until SIGINT/SIGTERM, then shut down gracefully: stop accepting,
    let in-flight queries finish (up to the shutdown timeout), close the database. Prints
    one line, `connector FR listening on http://host:port`, once it accepts connections."""
    serve_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        announce=f"connector {settings.jurisdiction.value}",
        # A `NodeError`, for what aiohttp refuses before the app runs.
        refusal=lambda status, code, message: _error(code, message, status),
        shutdown_timeout_s=settings.shutdown_timeout_s,
    )
