"""The gateway's aiohttp application: `POST /graphql`, `GET /healthz`, `GET /readyz`."""

from __future__ import annotations

import gc
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final

import orjson
from aiohttp import hdrs, web
from opentelemetry.trace import TracerProvider
from strawberry.aiohttp.views import GraphQLView
from strawberry.http import GraphQLHTTPResponse

from gateway.auth import Authenticator
from gateway.federation import Federation, load_federation
from gateway.graphql.context import GatewayContext, Services
from gateway.graphql.schema import build_schema
from gateway.nodes import HttpNodeClient, NodeClient, create_session
from gateway.settings import GatewaySettings
from gateway.signing import RequestSigner
from policies.loader import load_policy_set
from policies.policy_set import PolicySet

GRAPHQL_PATH: Final = "/graphql"
# A question is a few kilobytes at most; the query model caps what it can hold anyway.
MAX_REQUEST_BYTES: Final = 256 * 1024


@dataclass
class _State:
    """Filled when the app starts: services that need a running event loop."""

    services: Services | None = None


SETTINGS: Final = web.AppKey("tessera.gateway.settings", GatewaySettings)
FEDERATION: Final = web.AppKey("tessera.gateway.federation", Federation)
POLICIES: Final = web.AppKey("tessera.gateway.policies", PolicySet)
STATE: Final = web.AppKey("tessera.gateway.state", _State)


class GatewayView(GraphQLView[GatewayContext, None]):
    async def get_context(
        self, request: web.Request, response: web.Response | web.WebSocketResponse
    ) -> GatewayContext:
        services = request.app[STATE].services
        if services is None:
            raise web.HTTPServiceUnavailable(text="starting")
        return GatewayContext(
            services=services, authorization=request.headers.get(hdrs.AUTHORIZATION)
        )

    def decode_json(self, data: str | bytes) -> object:
        # orjson bounds nesting (depth 1024) and raises a JSONDecodeError the view turns into
        # a 400; the stdlib parser would hit Python's recursion limit and fail with a 500.
        return orjson.loads(data)

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: web.Response,
    ) -> web.Response:
        sub_response.body = self.encode_json(response_data)
        sub_response.content_type = "application/json"
        return sub_response


def create_app(
    settings: GatewaySettings,
    *,
    node_client: NodeClient | None = None,
    tracer_provider: TracerProvider | None = None,
) -> web.Application:
    """The gateway for `settings`. The federation file and its keys are loaded now, so a bad
    file fails here; the HTTP session to the nodes is opened when the app starts, unless a
    `node_client` (e.g. a `MockNodeClient`) is given."""
    federation = load_federation(settings.federation)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[SETTINGS] = settings
    app[FEDERATION] = federation
    # Policies load at start-up so that a broken policy file stops the gateway, not a query.
    app[POLICIES] = load_policy_set(settings.policies)
    app[STATE] = _State()
    app.cleanup_ctx.append(_services(node_client))

    view = GatewayView(
        schema=build_schema(tracer_provider=tracer_provider),
        graphql_ide="graphiql" if settings.graphiql else None,
        allow_queries_via_get=False,
        subscription_protocols=(),
    )
    app.router.add_post(GRAPHQL_PATH, view)
    if settings.graphiql:
        app.router.add_get(GRAPHQL_PATH, view)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def _services(
    node_client: NodeClient | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        federation, settings = app[FEDERATION], app[SETTINGS]
        session = None
        client = node_client
        if client is None:
            session = create_session()
            signer = RequestSigner(
                issuer=federation.gateway_id,
                kid=federation.signing_kid,
                key=federation.signing_key,
            )
            client = HttpNodeClient(session, signer)
        app[STATE].services = Services(
            federation=federation,
            authenticator=Authenticator(audience=federation.gateway_id, issuers=federation.issuers),
            node_client=client,
            policies=app[POLICIES],
            deadline_s=settings.deadline_s,
            node_timeout_s=settings.node_timeout_s,
        )
        try:
            yield
        finally:
            app[STATE].services = None
            if session is not None:
                await session.close()

    return lifetime


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready once the federation and the signing key are loaded and the node client is up."""
    if request.app[STATE].services is None:
        return web.json_response({"status": "starting"}, status=503)
    return web.json_response({"status": "ready", "nodes": len(request.app[FEDERATION].nodes)})


def serve(settings: GatewaySettings) -> None:
    """Run the gateway until interrupted; prints one line once it accepts connections."""
    app = create_app(settings)
    sock = _listen(settings.host, settings.port)
    freeze_heap()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    line = f"gateway listening on http://{host}:{sock.getsockname()[1]}{GRAPHQL_PATH}"
    web.run_app(app, sock=sock, print=lambda *_: print(line, flush=True))


def freeze_heap() -> None:
    """Move everything loaded so far (schema, models, policies: some 80,000 objects that live
    as long as the process) out of the garbage collector's reach. Otherwise every full
    collection walks them all, pydantic's validators deep inside: ~120 ms, every ~70 queries,
    straight into the latency tail."""
    gc.collect()
    gc.freeze()


def _listen(host: str, port: int) -> socket.socket:
    # Bound here rather than by aiohttp so that the line printed names the real port, also
    # when port 0 asked for a free one.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)
