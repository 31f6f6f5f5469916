"""The connector's HTTP service (aiohttp): the routes of `schema.wire`."""

from __future__ import annotations

import gc
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import orjson
from aiohttp import web
from pydantic import BaseModel

from connectors.backends.base import Backend
from connectors.backends.duckdb import DuckDBBackend
from connectors.errors import BadRequest, BodyTooLarge, http_status
from connectors.service import QueryService
from connectors.settings import ConnectorSettings, SettingsError
from connectors.verify import RequestVerifier, load_gateway_keys
from policies.loader import PolicyFileError, load_node_layer, load_policy_set
from policies.policy_set import EffectivePolicy, NodeLayerMismatch, NoPolicy
from schema.errors import ErrorCode, TesseraError
from schema.wire import (
    CONTENT_TYPE,
    HEALTH_PATH,
    MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES,
    QUERY_PATH,
    READY_PATH,
    NodeError,
)

log = logging.getLogger(__name__)

SETTINGS: Final = web.AppKey("settings", ConnectorSettings)
SERVICE: Final = web.AppKey("service", QueryService)
BACKEND: Final = web.AppKey[Backend]("backend")
SHUTDOWN_TIMEOUT_S: Final = 10.0


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
    if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
        raise _too_large()
    body = await request.read()
    answer = await request.app[SERVICE].handle(
        authorization=request.headers.get("Authorization"), body=body
    )
    body = _dump(answer)
    if len(body) > MAX_RESPONSE_BYTES:
        # The gateway would refuse it anyway; say why instead.
        raise BadRequest(
            f"the answer exceeds {MAX_RESPONSE_BYTES} bytes: ask for fewer or coarser tables"
        )
    return web.Response(body=body, content_type=CONTENT_TYPE)


async def _health(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def _ready(request: web.Request) -> web.Response:
    reason = await request.app[SERVICE].not_ready_reason()
    if reason is not None:
        return _json({"status": "unavailable", "reason": reason}, status=503)
    return _json({"status": "ready"})


async def _backend_lifetime(app: web.Application) -> AsyncIterator[None]:
    reason = await app[SERVICE].not_ready_reason()
    if reason is not None:
        log.warning("connector %s is not ready: %s", app[SETTINGS].jurisdiction.value, reason)
    yield
    await app[BACKEND].close()


def load_node_policy(settings: ConnectorSettings) -> EffectivePolicy:
    """The node's effective policy: EU baseline, its jurisdiction, its own layer. Loaded at
    start-up so that a broken or missing policy stops the connector instead of a query."""
    try:
        policies = load_policy_set(settings.policies)
        node_layer = load_node_layer(settings.node_policy) if settings.node_policy else None
        return policies.effective(settings.jurisdiction, node_layer)
    except (PolicyFileError, NoPolicy, NodeLayerMismatch) as exc:
        raise SettingsError(f"policies: {exc}") from exc


def create_app(settings: ConnectorSettings, *, backend: Backend | None = None) -> web.Application:
    """The connector application. It owns `backend` (default: DuckDB on
    `settings.database`) and closes it on cleanup. Raises `SettingsError` if a gateway key
    cannot be loaded."""
    try:
        keys = load_gateway_keys(settings.gateway_keys)
    except (OSError, ValueError) as exc:
        raise SettingsError(f"TESSERA_CONNECTOR_GATEWAY_KEYS: cannot load a key: {exc}") from exc
    policy = load_node_policy(settings)
    if backend is None:
        backend = DuckDBBackend(settings.database, threads=settings.threads)
    verifier = RequestVerifier(keys=keys, issuer=settings.gateway_issuer, audience=settings.node_id)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[_errors])
    app[SETTINGS] = settings
    app[BACKEND] = backend
    app[SERVICE] = QueryService(
        jurisdiction=settings.jurisdiction, backend=backend, verifier=verifier, policy=policy
    )
    app.cleanup_ctx.append(_backend_lifetime)
    app.router.add_post(QUERY_PATH, _query)
    app.router.add_get(HEALTH_PATH, _health)
    app.router.add_get(READY_PATH, _ready)
    return app


def serve(settings: ConnectorSettings) -> None:
    """Run the connector until SIGINT/SIGTERM, then shut down gracefully. Prints one line,
    `connector FR listening on http://host:port`, once it accepts connections."""
    app = create_app(settings)
    # What is loaded now (models, sqlglot, policies: ~77,000 objects) lives as long as the
    # process: out of the collector's reach, a full collection no longer walks it (~100 ms).
    gc.collect()
    gc.freeze()
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    # Binding here, not in aiohttp, gives the real port when settings.port is 0.
    sock = socket.create_server((settings.host, settings.port), family=family)
    port = sock.getsockname()[1]
    host = f"[{settings.host}]" if family == socket.AF_INET6 else settings.host
    line = f"connector {settings.jurisdiction.value} listening on http://{host}:{port}"
    web.run_app(
        app,
        sock=sock,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        print=lambda *_: print(line, flush=True),
    )
