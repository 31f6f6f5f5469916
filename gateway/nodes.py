"""Talking to nodes: the `NodeClient` protocol, its HTTP implementation and a fake for tests.

Whatever goes wrong on the way to a node or back is turned into a `NodeOutcome` here, once:
refused, reset or broken-off connections are UNAVAILABLE, timeouts TIMEOUT (also the node's
own QUERY_TIMEOUT), node errors (4xx/5xx) ERROR, and anything that does not follow
`tessera/1` exactly REJECTED. Only a connection that could not be opened is `retryable`: the
request never left, so sending it again is safe. Nothing past this module sees an aiohttp
exception or an unchecked node answer.
"""

from __future__ import annotations

import inspect
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

import aiohttp
import numpy as np
import orjson
from aiohttp import hdrs
from numpy.typing import NDArray
from opentelemetry import propagate
from pydantic import ValidationError

from gateway.answer_decoding import (
    CellKey as CellKey,  # the key of a cell, as the rest of the gateway names it
)
from gateway.answer_decoding import (
    DecodedAnswer,
    DecodedTable,
    decode_answer,
    decode_response,
)
from gateway.federation import NodeInfo
from gateway.question_token import take_signed
from policies.domain import table_domain
from schema.codes import Jurisdiction, MeasureKind, NodeStatus
from schema.errors import ErrorCode, TesseraError
from schema.measures import asked
from schema.query import Breakdown, CohortQuery
from schema.result import Reason, Value
from schema.wire import (
    APPROVAL_HEADER,
    BODY_SALT_HEADER,
    CONTENT_TYPE,
    MAX_RESPONSE_BYTES,
    QUERY_PATH,
    NodeError,
    NodeRequest,
    NodeResponse,
)
from trust.request_token import QuestionCredential, RequestSigner

log = logging.getLogger(__name__)

USER_AGENT: Final = "tessera-gateway/1"
_CHUNK_BYTES: Final = 64 * 1024

# One measure's values: cells by key, per breakdown.
Tables = Mapping[Breakdown, Mapping[CellKey, Value]]


@dataclass(frozen=True, slots=True)
class NodeOutcome:
    """What came of asking one node. `measures` (per measure asked, its cells by key, per
    breakdown) is filled exactly when the status is OK; `shares` too when the node took part
    in a pooled round (its masked shares per pooled table, one per cell of the table's public
    domain); `reasons` explain a DENIED or an UNKNOWN_CODE (whose codes are in
    `response.unknown_codes`). `response` is the answer's envelope (every field but its
    tables, which `measures` holds), `answer` the answer as decoded (its tables as columns,
    its hash and what the audit trail records of its values). `retryable` says the request
    never reached the node (it could not be connected to), so asking again is safe."""

    jurisdiction: Jurisdiction
    status: NodeStatus
    latency_ms: float | None = None
    response: NodeResponse | None = None
    answer: DecodedAnswer | None = None
    measures: Mapping[MeasureKind, Tables] = field(default_factory=dict)
    reasons: tuple[Reason, ...] = ()
    error_code: ErrorCode | None = None
    message: str | None = None
    retryable: bool = False
    shares: Mapping[Breakdown, NDArray[np.uint64]] = field(default_factory=dict)

    @classmethod
    def failed(
        cls,
        jurisdiction: Jurisdiction,
        status: NodeStatus,
        message: str,
        *,
        code: ErrorCode | None = None,
        latency_ms: float | None = None,
        retryable: bool = False,
    ) -> NodeOutcome:
        return cls(
            jurisdiction=jurisdiction,
            status=status,
            latency_ms=latency_ms,
            error_code=code,
            message=message,
            retryable=retryable,
        )


class NodeClient(Protocol):
    async def query(
        self,
        node: NodeInfo,
        request: NodeRequest,
        *,
        approval_token: str,
        timeout: float,  # noqa: ASYNC109 - the transport's budget; the fan-out also bounds it
    ) -> NodeOutcome: ...


def encode_request(request: NodeRequest) -> bytes:
    """The request's body: `orjson.dumps(request.model_dump(mode="json"))`, byte for byte
    (the node checks the token's hash of it), with the question's part encoded once for all
    the nodes asked it (the same `CohortQuery` in each node's request)."""
    fields = request.model_dump(mode="json", exclude={"query"})
    fields["query"] = _encoded_query(request.query)
    return orjson.dumps({name: fields[name] for name in _REQUEST_FIELDS})


_REQUEST_FIELDS: Final = tuple(NodeRequest.model_fields)
# Each question's query as JSON, by the query's identity (checked through a weak reference,
# so that a new query at the address of a freed one is encoded anew).
_ENCODED_QUERIES: dict[int, tuple[weakref.ref[CohortQuery], orjson.Fragment]] = {}
_MAX_ENCODED_QUERIES: Final = 256


def _encoded_query(query: CohortQuery) -> orjson.Fragment:
    found = _ENCODED_QUERIES.get(id(query))
    if found is not None and found[0]() is query:
        return found[1]
    encoded = orjson.Fragment(orjson.dumps(query.model_dump(mode="json")))
    if len(_ENCODED_QUERIES) >= _MAX_ENCODED_QUERIES:
        # Questions in flight are a few hundred at most; the oldest entries are long done.
        for stale in list(_ENCODED_QUERIES)[: _MAX_ENCODED_QUERIES // 2]:
            del _ENCODED_QUERIES[stale]
    _ENCODED_QUERIES[id(query)] = (weakref.ref(query), encoded)
    return encoded


def interpret(
    node: NodeInfo, request: NodeRequest, http_status: int, body: bytes, latency_ms: float
) -> NodeOutcome:
    """Turn a node's HTTP answer into an outcome, trusting nothing in it."""
    j = node.jurisdiction
    if http_status == 200:
        # Decoded once, without a model per cell; what the hand check is not sure of,
        # `NodeResponse` decides.
        answer = decode_answer(body)
        if answer is None:
            try:
                answer = decode_response(NodeResponse.model_validate_json(body, strict=True))
            except ValidationError:
                answer = None
        if answer is None:
            return NodeOutcome.failed(
                j,
                NodeStatus.REJECTED,
                "the answer does not follow tessera/1",
                latency_ms=latency_ms,
            )
        return check_answer(node, request, answer, latency_ms)
    if 400 <= http_status < 600:
        try:
            error = NodeError.model_validate_json(body)
        except ValidationError:
            return NodeOutcome.failed(
                j, NodeStatus.ERROR, f"the node answered HTTP {http_status}", latency_ms=latency_ms
            )
        # A node that gave up on its own query timeout timed out, whatever the HTTP status.
        status = NodeStatus.TIMEOUT if error.code is ErrorCode.QUERY_TIMEOUT else NodeStatus.ERROR
        return NodeOutcome.failed(j, status, error.message, code=error.code, latency_ms=latency_ms)
    return NodeOutcome.failed(
        j, NodeStatus.REJECTED, f"unexpected HTTP status {http_status}", latency_ms=latency_ms
    )


def check_response(
    node: NodeInfo, request: NodeRequest, response: NodeResponse, latency_ms: float
) -> NodeOutcome:
    """`check_answer` of an answer that is a model already."""
    answer = decode_response(response)
    if answer is None:
        return NodeOutcome.failed(
            node.jurisdiction,
            NodeStatus.REJECTED,
            "the answer does not follow tessera/1",
            latency_ms=latency_ms,
        )
    return check_answer(node, request, answer, latency_ms)


def check_answer(
    node: NodeInfo, request: NodeRequest, answer: DecodedAnswer, latency_ms: float
) -> NodeOutcome:
    """Check a well-formed answer against the question: same query, same node, exactly the
    tables asked, one cell per key, each with exactly the measures asked; for a pooled round,
    the round as sent (nonce, round, participants) and one 64-bit share for every cell of
    each pooled table."""

    def rejected(message: str) -> NodeOutcome:
        return NodeOutcome.failed(
            node.jurisdiction, NodeStatus.REJECTED, message, latency_ms=latency_ms
        )

    response = answer.head
    if response.query_id != request.query_id:
        return rejected("the answer is for another query")
    if response.jurisdiction is not node.jurisdiction:
        return rejected("the answer is for another jurisdiction")
    if response.status is NodeStatus.UNKNOWN_CODE and not response.unknown_codes:
        return rejected("an UNKNOWN_CODE answer names no code")
    if response.status in (NodeStatus.DENIED, NodeStatus.UNKNOWN_CODE):
        if answer.tables or response.pooled is not None:
            return rejected(f"a {response.status.value} answer carries tables")
        return NodeOutcome(
            jurisdiction=node.jurisdiction,
            status=response.status,
            latency_ms=latency_ms,
            response=response,
            answer=answer,
            reasons=tuple(response.reasons),
        )
    got = [t.by for t in answer.tables]
    if len(set(got)) != len(got) or set(got) != set(request.national_tables):
        return rejected("the answer's tables differ from those asked")
    shares: dict[Breakdown, NDArray[np.uint64]] = {}
    if (response.pooled is None) != (request.pooling is None):
        return rejected("the answer's pooled shares differ from those asked")
    if response.pooled is not None and request.pooling is not None:
        if not response.pooled.echoes(request.pooling):
            return rejected("the answer's pooled round differs from the one asked")
        for pooled in response.pooled.tables:
            try:
                values = pooled.values()
            except ValueError:
                return rejected("a pooled table's shares are malformed")
            if len(values) != len(table_domain(pooled.by, request.query)):
                return rejected("a pooled table has not one share per cell of its domain")
            shares[pooled.by] = values
    kinds = asked(request.query)
    measures: dict[MeasureKind, dict[Breakdown, dict[CellKey, Value]]] = {k: {} for k in kinds}
    for table in answer.tables:
        problem = _cells_problem(table, kinds)
        if problem is not None:
            return rejected(problem)
        keys = table.keys
        for kind in kinds:
            # Every cell carries every measure asked: no None left (checked just above).
            column = table.values.get(kind, ())
            measures[kind][table.by] = dict(zip(keys, column, strict=True))  # type: ignore[arg-type]
    # The total is there exactly when it was asked nationally (checked above with the tables).
    if any(() in tables and len(tables[()]) != 1 for tables in measures.values()):
        return rejected("the total table must have exactly one cell")
    return NodeOutcome(
        jurisdiction=node.jurisdiction,
        status=NodeStatus.OK,
        latency_ms=latency_ms,
        response=response,
        answer=answer,
        measures=measures,
        reasons=tuple(response.reasons),
        shares=shares,
    )


def _cells_problem(table: DecodedTable, kinds: Sequence[MeasureKind]) -> str | None:
    """Whether each cell has a key of the table's length, unlike every other's, and exactly
    the measures asked; the first problem, cell by cell, if not."""
    keys, size = table.keys, len(table.by)
    if (
        table.uniform
        and (not keys or table.values.keys() == set(kinds))
        and all(len(key) == size for key in keys)
        and len(set(keys)) == len(keys)
    ):
        return None
    seen: set[CellKey] = set()
    for i, key in enumerate(keys):
        if len(key) != size or key in seen:
            return "a table has a malformed or repeated cell key"
        seen.add(key)
        if {kind for kind, column in table.values.items() if column[i] is not None} != set(kinds):
            return "a cell does not carry exactly the measures asked"
    return None


class TooLarge(Exception):
    pass


class NodeUnreached(Exception):
    """A request that got no complete answer from its node: every transport failure, mapped
    once (`post_signed`) to the status and message a researcher sees."""

    def __init__(self, status: NodeStatus, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retryable = retryable


async def post_signed(
    session: aiohttp.ClientSession,
    signer: RequestSigner,
    node: NodeInfo,
    path: str,
    body: bytes,
    *,
    timeout: float,  # noqa: ASYNC109 - the transport's budget
    headers: Mapping[str, str] | None = None,
    question: QuestionCredential | None = None,
) -> tuple[int, bytes]:
    """POSTs `body` to `node` signed with a tessera/1 request token (or with its share of a
    `question` token), and returns the answer's HTTP status and body (at most
    `MAX_RESPONSE_BYTES`); `NodeUnreached` otherwise."""
    sent = {
        **(
            {"Authorization": question.authorization, BODY_SALT_HEADER: question.salt}
            if question is not None
            else {"Authorization": f"Bearer {signer.sign(body, audience=node.node_id)}"}
        ),
        **(headers or {}),
        "Content-Type": CONTENT_TYPE,
        "Accept": CONTENT_TYPE,
    }
    propagate.inject(sent)  # W3C traceparent of the current span, when there is one
    try:
        async with session.post(
            node.url + path,
            data=body,
            headers=sent,
            timeout=aiohttp.ClientTimeout(total=timeout),
            # A redirect would carry the signed request and the researcher's token to a host
            # nobody configured.
            allow_redirects=False,
        ) as response:
            return response.status, await read_limited(response, MAX_RESPONSE_BYTES)
    except TooLarge:
        raise NodeUnreached(NodeStatus.REJECTED, "the answer is too large") from None
    except TimeoutError:
        raise NodeUnreached(NodeStatus.TIMEOUT, f"no answer within {timeout:.1f} s") from None
    except aiohttp.ClientConnectorError:
        # Refused, unreachable, unresolvable: nothing was sent.
        raise NodeUnreached(
            NodeStatus.UNAVAILABLE, "the node cannot be reached", retryable=True
        ) from None
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
        # Reset, closed or cut off mid-answer: the node may have seen the request.
        raise NodeUnreached(
            NodeStatus.UNAVAILABLE, "the connection to the node was lost before a complete answer"
        ) from None
    except aiohttp.ClientError as e:
        log.warning("node %s: transport error %s", node.jurisdiction.value, type(e).__name__)
        raise NodeUnreached(NodeStatus.ERROR, "the answer could not be received") from None


DEFAULT_KEEPALIVE_S: Final = 15.0
DEFAULT_CONNECTIONS_PER_NODE: Final = 32


def create_session(
    *,
    connections_per_node: int = DEFAULT_CONNECTIONS_PER_NODE,
    keepalive_s: float = DEFAULT_KEEPALIVE_S,
) -> aiohttp.ClientSession:
    """The one session a gateway uses for its lifetime: pooled keep-alive connections to the
    nodes, no proxy settings from the environment, no default timeout (each request sets
    its own).

    An idle connection is dropped after `keepalive_s`, well before a node (aiohttp: 75 s) or
    a proxy in front of it (often 60 s) drops it: a request then never goes out on a
    connection the other side is closing, the race behind "server disconnected" errors on
    reused connections (which aiohttp does not retry for a POST). `connections_per_node`
    must not be below the fan-out's in-flight bound per node, or requests would queue inside
    aiohttp, unbounded and invisible."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=0, limit_per_host=connections_per_node, keepalive_timeout=keepalive_s
        ),
        timeout=aiohttp.ClientTimeout(total=None),
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
    )


class HttpNodeClient:
    """`tessera/1` over HTTP: signs each request (with its share of the question's token
    inside a fan-out's `question_scope`, when `question_tokens`), bounds and checks each
    answer."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        signer: RequestSigner,
        *,
        question_tokens: bool = True,
    ) -> None:
        self._session = session
        self._signer = signer
        self._question_tokens = question_tokens

    async def query(
        self,
        node: NodeInfo,
        request: NodeRequest,
        *,
        approval_token: str,
        timeout: float,  # noqa: ASYNC109 - the transport's budget; the fan-out also bounds it
    ) -> NodeOutcome:
        signed = (
            take_signed(self._signer, node.node_id, request, encode_request)
            if self._question_tokens
            else None
        )
        body = encode_request(request) if signed is None else signed.body
        started = time.perf_counter()
        try:
            status, payload = await post_signed(
                self._session,
                self._signer,
                node,
                QUERY_PATH,
                body,
                timeout=timeout,
                headers={APPROVAL_HEADER: approval_token},
                question=None if signed is None else signed.credential,
            )
        except NodeUnreached as e:
            return NodeOutcome.failed(
                node.jurisdiction,
                e.status,
                e.message,
                latency_ms=(time.perf_counter() - started) * 1000,
                retryable=e.retryable,
            )
        return interpret(node, request, status, payload, (time.perf_counter() - started) * 1000)


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        raise TooLarge
    if response.content_length is not None and hdrs.CONTENT_ENCODING not in response.headers:
        # Exactly the bytes announced, as sent: no more can arrive for this answer. (A
        # compressed body is counted as it is inflated, below.)
        return await response.read()
    received = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        received += chunk
        if len(received) > limit:
            raise TooLarge
    return bytes(received)


NodeAnswer = NodeResponse | NodeError | NodeOutcome
Handler = Callable[[NodeInfo, NodeRequest], NodeAnswer | Awaitable[NodeAnswer]]


@dataclass(frozen=True, slots=True)
class MockCall:
    node: NodeInfo
    request: NodeRequest
    approval_token: str
    timeout: float


class MockNodeClient:
    """A `NodeClient` answered by a function, for tests (like httpx's `MockTransport`).

    `handler(node, request)` returns (or awaits to) a `NodeResponse`, which goes through the
    same JSON round trip and checks as a real answer; a `NodeError`, reported as the node's
    ERROR; or a ready `NodeOutcome`. It may raise: `TimeoutError` is a TIMEOUT,
    `ConnectionError` UNAVAILABLE (`ConnectionRefusedError` a retryable one, as a connection
    that could not be opened is), a `TesseraError` an ERROR with its code; anything else
    escapes as a bug in the client would. Every call is recorded in `calls`.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[MockCall] = []

    async def query(
        self,
        node: NodeInfo,
        request: NodeRequest,
        *,
        approval_token: str,
        timeout: float,  # noqa: ASYNC109 - the transport's budget; the fan-out also bounds it
    ) -> NodeOutcome:
        self.calls.append(MockCall(node, request, approval_token, timeout))
        j = node.jurisdiction
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        try:
            answer = self.handler(node, request)
            if inspect.isawaitable(answer):
                answer = await answer
        except TimeoutError:
            return NodeOutcome.failed(j, NodeStatus.TIMEOUT, "timed out", latency_ms=elapsed())
        except ConnectionError as e:
            return NodeOutcome.failed(
                j,
                NodeStatus.UNAVAILABLE,
                "the node cannot be reached",
                latency_ms=elapsed(),
                retryable=isinstance(e, ConnectionRefusedError),
            )
        except TesseraError as e:
            return NodeOutcome.failed(
                j, NodeStatus.ERROR, e.message, code=e.code, latency_ms=elapsed()
            )
        if isinstance(answer, NodeOutcome):
            return answer
        if isinstance(answer, NodeError):
            return interpret(node, request, 500, answer.model_dump_json().encode(), elapsed())
        return interpret(node, request, 200, answer.model_dump_json().encode(), elapsed())
