"""Per-query deadline and quorum arguments, through the real HTTP endpoint: bad values get a
stable code before any node is asked; an unmet quorum names every node's status."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.federation import NodeInfo
from gateway.nodes import MockNodeClient
from gateway.quorum import Quorum
from schema.codes import Jurisdiction
from schema.errors import ErrorCode, TesseraError
from schema.wire import NodeRequest, NodeResponse
from tests.gateway.gateway_kit import counts_handler, error_code


def query(args: str) -> str:
    return (
        f'{{ cohort(request: "DR-2026-0042", criteria: {{}} {args}) '
        "{ count { value } byJurisdiction { jurisdiction status } } }"
    )


@pytest.mark.parametrize(
    ("args", "argument"),
    [
        ("deadlineMs: 50", "deadlineMs"),  # below 100 ms
        ("deadlineMs: 600000", "deadlineMs"),  # above the gateway's 60 s
        ("minNodes: 0", "minNodes"),
        ("minNodes: 4", "minNodes"),  # three jurisdictions asked
        ("minShare: 0", "minShare"),
        ("minShare: 1.5", "minShare"),
    ],
)
async def test_out_of_bounds_arguments_are_refused_before_any_node_is_asked(
    graphql: Any, nodes: MockNodeClient, args: str, argument: str
) -> None:
    body = await graphql(query(args))
    assert error_code(body) == "INVALID_ARGUMENT"
    assert body["errors"][0]["extensions"]["argument"] == argument
    assert body["data"] == {"cohort": None}
    assert nodes.calls == []


async def test_a_per_query_deadline_is_what_the_nodes_get(
    graphql: Any, nodes: MockNodeClient
) -> None:
    await graphql(query("deadlineMs: 1500"))
    assert {round(c.timeout, 1) for c in nodes.calls} == {1.5}


async def test_a_per_query_deadline_may_exceed_the_default(
    graphql: Any, nodes: MockNodeClient
) -> None:
    answer = counts_handler()

    async def slow_no(node: NodeInfo, request: NodeRequest) -> Any:
        if node.jurisdiction is Jurisdiction.NO:
            await asyncio.sleep(2.5)  # past the default 2 s
        return answer(node, request)

    nodes.handler = slow_no
    default = await graphql(query(""))
    longer = await graphql(query("deadlineMs: 5000"))
    status = {
        name: {n["jurisdiction"]: n["status"] for n in body["data"]["cohort"]["byJurisdiction"]}
        for name, body in (("default", default), ("longer", longer))
    }
    assert status["default"]["NO"] == "TIMEOUT"
    assert status["longer"]["NO"] == "OK"


def down_dk(nodes: MockNodeClient) -> None:
    answer = counts_handler()

    def handler(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        if node.jurisdiction is Jurisdiction.DK:
            raise ConnectionResetError
        return answer(node, request)  # type: ignore[return-value]

    nodes.handler = handler


async def test_an_unmet_quorum_fails_and_names_every_nodes_status(
    graphql: Any, nodes: MockNodeClient
) -> None:
    down_dk(nodes)
    body = await graphql(query("minNodes: 3"))
    assert error_code(body) == "QUORUM_NOT_MET"
    extensions = body["errors"][0]["extensions"]
    assert (extensions["required"], extensions["answered"]) == (3, 2)
    assert extensions["nodes"] == {"FR": "OK", "DK": "UNAVAILABLE", "NO": "OK"}
    assert body["data"] == {"cohort": None}  # no number over too few nodes


async def test_a_met_quorum_answers(graphql: Any, nodes: MockNodeClient) -> None:
    down_dk(nodes)
    body = await graphql(query("minNodes: 2, minShare: 0.5"))
    assert "errors" not in body
    assert body["data"]["cohort"]["count"]["value"] == 350


def test_the_share_is_of_the_nodes_asked_rounded_up() -> None:
    assert Quorum.of(min_nodes=None, min_share=0.5, asked=3).required == 2
    assert Quorum.of(min_nodes=None, min_share=1.0, asked=3).required == 3
    assert Quorum.of(min_nodes=1, min_share=0.1, asked=27).required == 3
    assert Quorum.of(min_nodes=None, min_share=None, asked=5).required == 0
    with pytest.raises(TesseraError) as raised:
        Quorum.of(min_nodes=None, min_share=float("nan"), asked=3)
    assert raised.value.code is ErrorCode.INVALID_ARGUMENT
