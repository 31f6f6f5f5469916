"""One request token per question (`trust.request_token.RequestSigner.sign_question`), signed
when the first node of a fan-out is asked and handed to each node's request.

The fan-out knows every node's request before any leaves; the signer lives in the innermost
node client, beneath the resilience, vetting and watching wrappers, which pass each request
through unchanged. A context variable joins the two without threading a token through every
client's signature: the fan-out opens a `QuestionScope` around its gather (each task copies
the context, and so shares the scope), and the HTTP client takes its node's credential from
it. A node's credential is handed out once: a retry of that node, a request the scope does
not know (not the very object the fan-out planned), or one that waited for its node's slot
past half the token's lifetime (the question token is signed when the first node is asked),
is signed with a token of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Final

from schema.wire import NodeRequest
from trust.request_token import LIFETIME_S, QuestionCredential, RequestSigner

# Below this many nodes a question token saves nothing: one node is signed on its own.
MIN_QUESTION_NODES: Final = 2
# A request sent later than this after the question token was signed gets its own token, so
# that no node sees a token near its expiry (a node in a batch latency class may wait long
# for a slot).
FRESH_FOR_S: Final = LIFETIME_S / 2


@dataclass(frozen=True, slots=True)
class SignedBody:
    body: bytes
    credential: QuestionCredential


@dataclass(slots=True)
class QuestionScope:
    """The requests of one fan-out by node id, and their credentials once signed."""

    requests: Mapping[str, NodeRequest]
    clock: Callable[[], float] = time.monotonic
    signed: dict[str, SignedBody] | None = None
    signed_at: float = 0.0
    handed: set[str] = field(default_factory=set)


_QUESTION: ContextVar[QuestionScope | None] = ContextVar("tessera_question", default=None)


@contextmanager
def question_scope(
    requests: Mapping[str, NodeRequest], *, clock: Callable[[], float] = time.monotonic
) -> Iterator[None]:
    """While open, the node clients of this context sign `requests` (by node id) with one
    question token."""
    scope = QuestionScope(requests, clock) if len(requests) >= MIN_QUESTION_NODES else None
    reset = _QUESTION.set(scope)
    try:
        yield
    finally:
        _QUESTION.reset(reset)


def take_signed(
    signer: RequestSigner,
    node_id: str,
    request: NodeRequest,
    encode: Callable[[NodeRequest], bytes],
) -> SignedBody | None:
    """`request`'s body and its node's share of the question token, the first time the
    open scope's own request for `node_id` is asked; None otherwise (sign it alone)."""
    scope = _QUESTION.get()
    if scope is None or scope.requests.get(node_id) is not request or node_id in scope.handed:
        return None
    if scope.signed is None:
        bodies = {node: encode(r) for node, r in scope.requests.items()}
        credentials = signer.sign_question(bodies)
        scope.signed = {node: SignedBody(bodies[node], credentials[node]) for node in bodies}
        scope.signed_at = scope.clock()
    elif scope.clock() - scope.signed_at > FRESH_FOR_S:
        return None
    scope.handed.add(node_id)
    return scope.signed[node_id]
