"""Asking the nodes what their vocabularies hold (`schema.wire.ConceptsRequest`).

Public facts about the vocabularies, read by each node from its concept tables only: the
request is signed as a query is (the node checks it was the gateway that asked), but it
carries no permit, charges no privacy budget and gets no noise, because no person's record is
read. What goes wrong with a node is its status here, as for a query (`gateway.nodes`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from pydantic import ValidationError

from gateway.federation import NodeInfo
from gateway.nodes import NodeUnreached, post_signed
from schema.codes import Jurisdiction, NodeStatus
from schema.query import Code
from schema.wire import (
    CONCEPTS_PATH,
    ConceptsRequest,
    ConceptsResponse,
    NodeConcept,
    NodeError,
)
from trust.request_token import RequestSigner


@dataclass(frozen=True, slots=True)
class ConceptsOutcome:
    """One node's answer: `concepts` (one per code asked, in order) exactly when OK."""

    jurisdiction: Jurisdiction
    status: NodeStatus
    concepts: tuple[NodeConcept, ...] = ()
    error: str | None = None


class ConceptClient(Protocol):
    async def concepts(
        self,
        node: NodeInfo,
        codes: Sequence[Code],
        *,
        timeout: float,  # noqa: ASYNC109 - the transport's budget
    ) -> ConceptsOutcome: ...


def check_concepts(
    node: NodeInfo, codes: Sequence[Code], http_status: int, body: bytes
) -> ConceptsOutcome:
    """A node's HTTP answer as an outcome, trusting nothing in it."""
    j = node.jurisdiction
    if http_status != 200:
        try:
            error = NodeError.model_validate_json(body)
            message = f"{error.code.value}: {error.message}"
        except ValidationError:
            message = f"the node answered HTTP {http_status}"
        return ConceptsOutcome(j, NodeStatus.ERROR, error=message)
    try:
        response = ConceptsResponse.model_validate_json(body, strict=True)
    except ValidationError:
        return ConceptsOutcome(j, NodeStatus.REJECTED, error="the answer does not follow tessera/1")
    if response.jurisdiction is not j:
        return ConceptsOutcome(j, NodeStatus.REJECTED, error="the answer is for another node")
    if [c.code for c in response.concepts] != list(codes):
        return ConceptsOutcome(j, NodeStatus.REJECTED, error="the answer is for other codes")
    if any(
        c.matches or c.descendants or c.descendant_count for c in response.concepts if not c.known
    ):
        return ConceptsOutcome(j, NodeStatus.REJECTED, error="an unknown code reaches concepts")
    return ConceptsOutcome(j, NodeStatus.OK, concepts=tuple(response.concepts))


class HttpConceptClient:
    """`tessera/1` vocabulary look-ups over HTTP, signed as queries are."""

    def __init__(self, session: aiohttp.ClientSession, signer: RequestSigner) -> None:
        self._session = session
        self._signer = signer

    async def concepts(
        self,
        node: NodeInfo,
        codes: Sequence[Code],
        *,
        timeout: float,  # noqa: ASYNC109 - the transport's budget
    ) -> ConceptsOutcome:
        request = ConceptsRequest(jurisdiction=node.jurisdiction, codes=list(codes))
        body = request.model_dump_json().encode()
        try:
            status, payload = await post_signed(
                self._session, self._signer, node, CONCEPTS_PATH, body, timeout=timeout
            )
        except NodeUnreached as e:
            return ConceptsOutcome(node.jurisdiction, e.status, error=e.message)
        return check_concepts(node, codes, status, payload)


async def ask_concepts(
    client: ConceptClient,
    nodes: Mapping[Jurisdiction, NodeInfo],
    jurisdictions: Sequence[Jurisdiction],
    codes: Sequence[Code],
    *,
    timeout_s: float,
) -> list[ConceptsOutcome]:
    """Every node asked at once; one that has not answered by `timeout_s` is TIMEOUT."""
    started = time.monotonic()

    async def one(j: Jurisdiction) -> ConceptsOutcome:
        try:
            async with asyncio.timeout(timeout_s):
                return await client.concepts(nodes[j], codes, timeout=timeout_s)
        except TimeoutError:
            waited = time.monotonic() - started
            return ConceptsOutcome(j, NodeStatus.TIMEOUT, error=f"no answer within {waited:.1f} s")

    return list(await asyncio.gather(*(one(j) for j in jurisdictions)))
