"""Node requests over real HTTP: what the gateway signs and sends, and how every kind of answer
(or non-answer) becomes a node status."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import gzip
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from gateway.app import create_app
from gateway.federation import NodeInfo
from gateway.nodes import HttpNodeClient, MockNodeClient, NodeOutcome, create_session
from gateway.planner import plan_query
from gateway.question_token import question_scope
from gateway.settings import GatewaySettings
from schema.codes import Jurisdiction, NodeStatus
from schema.errors import ErrorCode, TesseraError
from schema.result import Reason
from schema.wire import (
    APPROVAL_HEADER,
    BODY_SALT_HEADER,
    MAX_RESPONSE_BYTES,
    QUERY_PATH,
    QUESTION_TOKEN_TYP,
    REQUEST_TOKEN_MAX_LIFETIME_S,
    REQUEST_TOKEN_TYP,
    NodeError,
    NodeRequest,
    NodeResponse,
    salted_body_hash,
)
from tests.gateway.gateway_kit import (
    APPROVAL,
    COUNT,
    DEFAULT_COUNTS,
    GATEWAY_ID,
    MEMBERS,
    REQUEST_ID,
    SEX,
    SUBJECT,
    Keys,
    mint,
    node_response,
    write_federation,
)
from trust.request_token import RequestSigner, RequestVerifier

FR = Jurisdiction.FR
Behaviour = Callable[[web.Request, NodeRequest], Awaitable[web.StreamResponse]]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens once the socket is closed: connections are refused


class FakeNode:
    """A node that checks the gateway's signature as a connector must, then behaves as told."""

    def __init__(self, keys: Keys) -> None:
        self.public_key = keys.gateway.public_key()
        self.behaviour: dict[str, Behaviour] = {}
        self.seen: list[dict[str, Any]] = []
        self.verifiers: dict[str, RequestVerifier] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        authorization = request.headers["Authorization"]
        node_id = f"tessera-node-{request.match_info['node']}"
        verifier = self.verifiers.setdefault(
            node_id,
            RequestVerifier(
                keys={"gateway-1": self.public_key}, issuer=GATEWAY_ID, audience=node_id
            ),
        )
        await verifier.verify(authorization, body, salt=request.headers.get(BODY_SALT_HEADER))
        token = authorization.removeprefix("Bearer ")
        self.seen.append(
            {
                "node": node_id,
                "header": jwt.get_unverified_header(token),
                "claims": jwt.decode(token, options={"verify_signature": False}),
                "body": body,
                "salt": request.headers.get(BODY_SALT_HEADER),
                "approval": request.headers.get(APPROVAL_HEADER),
                "content_type": request.headers.get("Content-Type"),
                "traceparent": request.headers.get("traceparent"),
            }
        )
        node_request = NodeRequest.model_validate_json(body)
        behaviour = self.behaviour.get(request.match_info["node"], answer_with_counts)
        return await behaviour(request, node_request)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{node}" + QUERY_PATH, self.handle)
        return app


async def answer_with_counts(request: web.Request, node_request: NodeRequest) -> web.Response:
    counts = DEFAULT_COUNTS[node_request.jurisdiction]
    response = node_response(node_request, counts)
    return web.Response(body=response.model_dump_json(), content_type="application/json")


@pytest.fixture
async def fake_node(keys: Keys) -> AsyncIterator[tuple[FakeNode, str]]:
    node = FakeNode(keys)
    server = TestServer(node.app())
    await server.start_server()
    yield node, str(server.make_url("")).rstrip("/")
    await server.close()


async def test_signed_request_through_the_whole_gateway(
    tmp_path: Path, keys: Keys, fake_node: tuple[FakeNode, str]
) -> None:
    node, base = fake_node
    urls = {
        Jurisdiction.FR: f"{base}/fr",
        Jurisdiction.DK: f"{base}/dk",
        Jurisdiction.NO: f"http://127.0.0.1:{closed_port()}",
    }
    settings = GatewaySettings.from_env(
        {"TESSERA_GATEWAY_FEDERATION": str(write_federation(tmp_path, keys, urls))},
        deadline_s=5,
    )
    token = mint(keys)
    spans = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(spans))
    async with TestClient(TestServer(create_app(settings, tracer_provider=tracing))) as client:
        response = await client.post(
            "/graphql",
            json={
                "query": '{ cohort(request: "DR-2026-0042", criteria: {sex: FEMALE}) {'
                " traceId count { value reasons { rule } }"
                " byJurisdiction { jurisdiction status count { value } }"
                " breakdown(by: [SEX]) { cells { count { value } } } } }"
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        body = await response.json()
    assert "errors" not in body, body
    result = body["data"]["cohort"]
    assert {n["jurisdiction"]: n["status"] for n in result["byJurisdiction"]} == {
        "FR": "OK",
        "DK": "OK",
        "NO": "UNAVAILABLE",
    }
    assert result["count"]["value"] == 450
    assert result["count"]["reasons"] == [{"rule": "NOISE"}] * 2 + [{"rule": "PARTIAL"}]

    assert len(node.seen) == 2
    # One question token for the three nodes asked (NO's request could not be sent).
    (header,) = {tuple(seen["header"].items()) for seen in node.seen}
    assert dict(header) == {"alg": "EdDSA", "kid": "gateway-1", "typ": QUESTION_TOKEN_TYP}
    (claims,) = {orjson.dumps(seen["claims"]) for seen in node.seen}
    question = orjson.loads(claims)
    assert sorted(question["aud"]) == ["tessera-node-dk", "tessera-node-fr", "tessera-node-no"]
    assert 0 < question["exp"] - question["iat"] <= REQUEST_TOKEN_MAX_LIFETIME_S
    assert len(question["jti"]) == 32
    assert len({seen["salt"] for seen in node.seen}) == 2
    for seen in node.seen:
        salt = base64.urlsafe_b64decode(seen["salt"] + "==")
        assert question["bsm"][seen["node"]] == salted_body_hash(salt, seen["body"])
        assert seen["approval"] == token
        assert seen["content_type"] == "application/json"
        request = NodeRequest.model_validate_json(seen["body"])
        assert request.request_id == REQUEST_ID
        assert request.query.tables == [(), SEX]
    # Each node request carries the context of its own client span (W3C traceparent), in
    # the operation's trace.
    finished = spans.get_finished_spans()
    (operation,) = [s for s in finished if s.name == "graphql.operation"]
    calls = {
        s.attributes["tessera.jurisdiction"]: s
        for s in finished
        if s.name == "gateway.node_call" and s.attributes
    }
    trace_id = f"{operation.context.trace_id:032x}"
    assert result["traceId"] == trace_id
    assert {s["traceparent"].split("-")[1] for s in node.seen} == {trace_id}
    assert {s["traceparent"].split("-")[2] for s in node.seen} == {
        f"{calls[j].context.span_id:016x}" for j in ("FR", "DK")
    }
    assert calls["NO"].status.status_code is StatusCode.ERROR
    assert calls["NO"].attributes is not None
    assert calls["NO"].attributes["tessera.node.status"] == "UNAVAILABLE"
    assert {s["node"] for s in node.seen} == {"tessera-node-fr", "tessera-node-dk"}


@pytest.fixture
async def http_client(keys: Keys) -> AsyncIterator[HttpNodeClient]:
    session = create_session()
    signer = RequestSigner(issuer=GATEWAY_ID, kid="gateway-1", key=keys.gateway)
    yield HttpNodeClient(session, signer)
    await session.close()


def node_request() -> NodeRequest:
    plan = plan_query(
        subject=SUBJECT,
        members=MEMBERS,
        request_id=REQUEST_ID,
        criteria={},
        jurisdictions=None,
        reference_date=dt.date(2026, 1, 1),
        tables=[SEX],
    )
    return plan.node_request(FR, APPROVAL)


async def ask(
    client: HttpNodeClient,
    fake: tuple[FakeNode, str],
    behaviour: Behaviour,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - passed on to the client under test
) -> NodeOutcome:
    node, base = fake
    node.behaviour["fr"] = behaviour
    info = NodeInfo(FR, "tessera-node-fr", f"{base}/fr")
    return await client.query(info, node_request(), approval_token="researcher", timeout=timeout)


def json_answer(text: str | bytes, status: int = 200) -> Behaviour:
    async def behave(request: web.Request, node_request: NodeRequest) -> web.Response:
        return web.Response(body=text, status=status, content_type="application/json")

    return behave


def answer(**changes: Any) -> Behaviour:
    async def behave(request: web.Request, node_request: NodeRequest) -> web.Response:
        response = node_response(node_request, DEFAULT_COUNTS[FR]).model_copy(update=changes)
        return web.Response(body=response.model_dump_json(), content_type="application/json")

    return behave


async def test_ok(http_client: HttpNodeClient, fake_node: tuple[FakeNode, str]) -> None:
    outcome = await ask(http_client, fake_node, answer_with_counts)
    assert outcome.status is NodeStatus.OK
    assert outcome.measures[COUNT][()][()].value == 300
    assert outcome.measures[COUNT][SEX][("FEMALE",)].value == 180
    assert outcome.latency_ms is not None
    assert outcome.latency_ms > 0


async def test_a_request_outside_a_fan_out_is_signed_alone(
    http_client: HttpNodeClient, fake_node: tuple[FakeNode, str]
) -> None:
    outcome = await ask(http_client, fake_node, answer_with_counts)
    assert outcome.status is NodeStatus.OK
    (seen,) = fake_node[0].seen
    assert seen["header"]["typ"] == REQUEST_TOKEN_TYP
    assert seen["claims"]["aud"] == "tessera-node-fr"
    assert seen["claims"]["bsh"] == hashlib.sha256(seen["body"]).hexdigest()
    assert seen["salt"] is None


@pytest.mark.parametrize("question_tokens", [True, False])
async def test_a_fan_out_signs_with_the_question_token_unless_turned_off(
    keys: Keys, fake_node: tuple[FakeNode, str], question_tokens: bool
) -> None:
    node, base = fake_node
    session = create_session()
    signer = RequestSigner(issuer=GATEWAY_ID, kid="gateway-1", key=keys.gateway)
    client = HttpNodeClient(session, signer, question_tokens=question_tokens)
    request = node_request()
    other = request.model_copy(update={"jurisdiction": Jurisdiction.DK})
    info = NodeInfo(FR, "tessera-node-fr", f"{base}/fr")
    try:
        with question_scope({"tessera-node-fr": request, "tessera-node-dk": other}):
            outcome = await client.query(info, request, approval_token="r", timeout=5.0)
    finally:
        await session.close()
    assert outcome.status is NodeStatus.OK
    (seen,) = node.seen
    assert seen["header"]["typ"] == (QUESTION_TOKEN_TYP if question_tokens else REQUEST_TOKEN_TYP)
    assert (seen["salt"] is not None) is question_tokens


async def test_denied(http_client: HttpNodeClient, fake_node: tuple[FakeNode, str]) -> None:
    why = Reason(rule="PURPOSE", jurisdiction=FR, message="not for this purpose")
    outcome = await ask(
        http_client, fake_node, answer(status=NodeStatus.DENIED, tables=[], reasons=[why])
    )
    assert outcome.status is NodeStatus.DENIED
    assert outcome.reasons == (why,)


async def test_node_error_keeps_its_code(
    http_client: HttpNodeClient, fake_node: tuple[FakeNode, str]
) -> None:
    error = NodeError(code=ErrorCode.BACKEND_FAILED, message="database is not ready")
    outcome = await ask(http_client, fake_node, json_answer(error.model_dump_json(), 503))
    assert (outcome.status, outcome.error_code, outcome.message) == (
        NodeStatus.ERROR,
        ErrorCode.BACKEND_FAILED,
        "database is not ready",
    )


async def test_node_error_without_a_body(
    http_client: HttpNodeClient, fake_node: tuple[FakeNode, str]
) -> None:
    outcome = await ask(http_client, fake_node, json_answer(b"<html>oops</html>", 502))
    assert (outcome.status, outcome.error_code) == (NodeStatus.ERROR, None)
    assert outcome.message == "the node answered HTTP 502"


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        (json_answer(b"not json"), "the answer does not follow tessera/1"),
        (json_answer(b'{"protocol": "tessera/1"}'), "the answer does not follow tessera/1"),
        (answer(query_id="another-query-1"), "the answer is for another query"),
        (answer(jurisdiction=Jurisdiction.DE), "the answer is for another jurisdiction"),
        (answer(tables=[]), "the answer's tables differ from those asked"),
    ],
    ids=["garbage", "incomplete", "query-id", "jurisdiction", "tables"],
)
async def test_rejected(
    http_client: HttpNodeClient,
    fake_node: tuple[FakeNode, str],
    behaviour: Behaviour,
    message: str,
) -> None:
    outcome = await ask(http_client, fake_node, behaviour)
    assert (outcome.status, outcome.message) == (NodeStatus.REJECTED, message)


async def test_extra_fields_are_rejected(
    http_client: HttpNodeClient, fake_node: tuple[FakeNode, str]
) -> None:
    async def behave(request: web.Request, node_request: NodeRequest) -> web.Response:
        data = node_response(node_request, DEFAULT_COUNTS[FR]).model_dump(mode="json")
        data["tables"][0]["cells"][0]["values"]["PERSON_COUNT"]["raw"] = 3
        return web.json_response(data)

    outcome = await ask(http_client, fake_node, behave)
    assert outcome.status is NodeStatus.REJECTED


@pytest.mark.parametrize(
    "values",
    [{}, {"PERSON_SUM": {"value": 30, "status": "PERTURBED", "sd": 5.0}}],
    ids=["no-measure", "unknown-measure"],
)
async def test_a_cell_without_exactly_the_measures_asked_is_rejected(
    http_client: HttpNodeClient, fake_node: tuple[FakeNode, str], values: dict[str, object]
) -> None:
    async def behave(request: web.Request, node_request: NodeRequest) -> web.Response:
        data = node_response(node_request, DEFAULT_COUNTS[FR]).model_dump(mode="json")
        data["tables"][0]["cells"][0]["values"] = values
        return web.json_response(data)

    outcome = await ask(http_client, fake_node, behave)
    assert outcome.status is NodeStatus.REJECTED


async def test_a_redirect_is_not_followed(
    http_client: HttpNodeClient, fake_node: tuple[FakeNode, str]
) -> None:
    async def behave(request: web.Request, node_request: NodeRequest) -> web.Response:
        raise web.HTTPTemporaryRedirect("http://elsewhere.example/v1/query")

    outcome = await ask(http_client, fake_node, behave)
    assert (outcome.status, outcome.message) == (NodeStatus.REJECTED, "unexpected HTTP status 307")


async def test_an_oversized_answer_is_rejected(
    http_client: HttpNodeClient, fake_node: tuple[FakeNode, str]
) -> None:
    async def behave(request: web.Request, node_request: NodeRequest) -> web.StreamResponse:
        # Streamed without a Content-Length, so only counting the bytes can catch it.
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b" " * 65536
        for _ in range(MAX_RESPONSE_BYTES // len(chunk) + 2):
            await response.write(chunk)
        await response.write_eof()
        return response

    outcome = await ask(http_client, fake_node, behave)
    assert (outcome.status, outcome.message) == (NodeStatus.REJECTED, "the answer is too large")


async def test_a_compressed_answer_is_counted_as_it_is_inflated(
    http_client: HttpNodeClient, fake_node: tuple[FakeNode, str]
) -> None:
    # A small body with a Content-Length that inflates beyond the limit (a "zip bomb"): the
    # bytes announced are not what the gateway would hold.
    bomb = gzip.compress(b" " * (MAX_RESPONSE_BYTES + 65536))

    async def behave(request: web.Request, node_request: NodeRequest) -> web.Response:
        return web.Response(
            body=bomb,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    outcome = await ask(http_client, fake_node, behave)
    assert len(bomb) < MAX_RESPONSE_BYTES // 100
    assert (outcome.status, outcome.message) == (NodeStatus.REJECTED, "the answer is too large")


async def test_an_answer_announced_too_large_is_rejected(
    http_client: HttpNodeClient, fake_node: tuple[FakeNode, str]
) -> None:
    async def behave(request: web.Request, node_request: NodeRequest) -> web.Response:
        return web.Response(body=b" " * (MAX_RESPONSE_BYTES + 1), content_type="application/json")

    outcome = await ask(http_client, fake_node, behave)
    assert (outcome.status, outcome.message) == (NodeStatus.REJECTED, "the answer is too large")


async def test_an_answer_with_a_length_and_chunks_is_not_taken(http_client: HttpNodeClient) -> None:
    # Read in one piece when it announces its length: an answer that also says it is
    # chunked (and sends far more than announced) must not be read as either.
    async def smuggle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
        with contextlib.suppress(ConnectionError):
            for _ in range(MAX_RESPONSE_BYTES // 0x10000 + 2):
                writer.write(chunk)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(smuggle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        info = NodeInfo(FR, "tessera-node-fr", f"http://127.0.0.1:{port}")
        outcome = await http_client.query(info, node_request(), approval_token="t", timeout=5)
    assert outcome.status in (NodeStatus.ERROR, NodeStatus.REJECTED, NodeStatus.UNAVAILABLE)


async def test_timeout(http_client: HttpNodeClient, fake_node: tuple[FakeNode, str]) -> None:
    async def slow(request: web.Request, node_request: NodeRequest) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    outcome = await ask(http_client, fake_node, slow, timeout=0.2)
    assert outcome.status is NodeStatus.TIMEOUT


async def test_connection_refused(http_client: HttpNodeClient) -> None:
    info = NodeInfo(FR, "tessera-node-fr", f"http://127.0.0.1:{closed_port()}")
    outcome = await http_client.query(info, node_request(), approval_token="t", timeout=2)
    assert outcome.status is NodeStatus.UNAVAILABLE
    assert outcome.retryable  # nothing was sent: safe to send again


async def test_connection_reset(
    http_client: HttpNodeClient, fake_node: tuple[FakeNode, str]
) -> None:
    async def hang_up(request: web.Request, node_request: NodeRequest) -> web.Response:
        assert request.transport is not None
        request.transport.abort()
        await asyncio.sleep(1)
        return web.Response()

    outcome = await ask(http_client, fake_node, hang_up)
    assert outcome.status is NodeStatus.UNAVAILABLE
    assert not outcome.retryable  # the node may have seen the request


async def test_an_answer_cut_off_midway_is_unavailable(
    http_client: HttpNodeClient, fake_node: tuple[FakeNode, str]
) -> None:
    async def die(request: web.Request, node_request: NodeRequest) -> web.StreamResponse:
        body = node_response(node_request, DEFAULT_COUNTS[FR]).model_dump_json().encode()
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Content-Length": str(len(body))}
        )
        await response.prepare(request)
        await response.write(body[:20])
        assert request.transport is not None
        request.transport.abort()
        return response

    outcome = await ask(http_client, fake_node, die)
    assert outcome.status is NodeStatus.UNAVAILABLE
    assert outcome.message == "the connection to the node was lost before a complete answer"
    assert not outcome.retryable


async def test_a_node_that_gave_up_on_its_own_time_limit_timed_out(
    http_client: HttpNodeClient, fake_node: tuple[FakeNode, str]
) -> None:
    error = NodeError(code=ErrorCode.QUERY_TIMEOUT, message="the query ran longer than 30 s")
    outcome = await ask(http_client, fake_node, json_answer(error.model_dump_json(), 503))
    assert (outcome.status, outcome.error_code) == (NodeStatus.TIMEOUT, ErrorCode.QUERY_TIMEOUT)


async def test_mock_client_maps_raised_errors() -> None:
    info = NodeInfo(FR, "tessera-node-fr", "http://fr")
    request = node_request()

    async def outcome_of(error: BaseException) -> NodeOutcome:
        def handler(node: NodeInfo, request: NodeRequest) -> NodeResponse:
            raise error

        client = MockNodeClient(handler)
        return await client.query(info, request, approval_token="t", timeout=1)

    assert (await outcome_of(TimeoutError())).status is NodeStatus.TIMEOUT
    assert (await outcome_of(ConnectionResetError())).status is NodeStatus.UNAVAILABLE
    failed = await outcome_of(TesseraError("no", code=ErrorCode.BACKEND_FAILED))
    assert (failed.status, failed.error_code) == (NodeStatus.ERROR, ErrorCode.BACKEND_FAILED)
    with pytest.raises(ZeroDivisionError):
        await outcome_of(ZeroDivisionError())


async def test_mock_client_checks_answers_like_http() -> None:
    info = NodeInfo(FR, "tessera-node-fr", "http://fr")
    client = MockNodeClient(
        lambda node, request: node_response(request, DEFAULT_COUNTS[FR]).model_copy(
            update={"query_id": "someone-else"}
        )
    )
    outcome = await client.query(info, node_request(), approval_token="t", timeout=1)
    assert outcome.status is NodeStatus.REJECTED
    assert client.calls[0].approval_token == "t"


async def test_session_is_closed_with_the_app(settings: GatewaySettings) -> None:
    app = create_app(settings)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/readyz")).status == 200
        from gateway.app import STATE

        session = app[STATE].session
        assert isinstance(session, aiohttp.ClientSession)
        assert not session.closed
    assert session.closed
    assert app[STATE].services is None
