"""The gateway end to end over HTTP (aiohttp test client), with fake nodes."""

from __future__ import annotations

import asyncio
import math
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.federation import NodeInfo
from gateway.nodes import MockNodeClient
from schema.codes import Jurisdiction
from schema.wire import NodeRequest, NodeResponse
from serving.lifecycle import LIFECYCLE
from tests.gateway.gateway_kit import (
    DEFAULT_COUNTS,
    REQUEST_ID,
    Keys,
    counts_handler,
    error_code,
    mint,
)

DIABETIC_WOMEN = """
query Diabetic($j: [Jurisdiction!]) {
  cohort(request: "DR-2026-0042", jurisdictions: $j, referenceDate: "2026-01-01",
         criteria: { sex: FEMALE, age: { min: 40, max: 69 },
                     conditions: [{ vocabulary: ICD10, code: "E11" }] }) {
    queryId
    traceId
    referenceDate
    count { value status reasons { rule jurisdiction message } bound sd }
    byJurisdiction { jurisdiction status latencyMs error
                     count { value status reasons { rule jurisdiction } }
                     reasons { rule jurisdiction message } }
    bySex: breakdown(by: [SEX]) { by cells { dimensions { name value } count { value status } } }
    byCountry: breakdown(by: [JURISDICTION]) {
      cells { dimensions { name value } count { value status } }
    }
  }
}
"""


def cohort(criteria: str, extra: str = "", request: str = REQUEST_ID) -> str:
    return (
        f'{{ cohort(request: "{request}", {extra} criteria: {criteria}) '
        "{ count { value status reasons { rule } } "
        "byJurisdiction { jurisdiction status count { value } } } }"
    )


NOISE_MESSAGE = (
    "unbiased noise of standard deviation 5 added; the same question always gets the same number"
)


async def test_happy_path_pools_every_node(graphql: Any, nodes: MockNodeClient) -> None:
    body = await graphql(DIABETIC_WOMEN)
    assert "errors" not in body, body
    result = body["data"]["cohort"]
    assert result["count"] == {
        "value": 500,
        "status": "PERTURBED",
        "reasons": [
            {"rule": "NOISE", "jurisdiction": j, "message": NOISE_MESSAGE}
            for j in ("DK", "FR", "NO")
        ],
        "bound": None,
        "sd": pytest.approx(math.sqrt(3) * 5),
    }
    assert result["referenceDate"] == "2026-01-01"
    assert [n["jurisdiction"] for n in result["byJurisdiction"]] == ["DK", "FR", "NO"]
    assert {n["jurisdiction"]: n["count"]["value"] for n in result["byJurisdiction"]} == {
        "FR": 300,
        "DK": 150,
        "NO": 50,
    }
    assert all(n["status"] == "OK" and n["latencyMs"] >= 0 for n in result["byJurisdiction"])
    assert result["bySex"]["by"] == ["SEX"]
    assert [
        (c["dimensions"][0]["value"], c["count"]["value"]) for c in result["bySex"]["cells"]
    ] == [("FEMALE", 300)]  # the criteria's sex: the only cell of the domain
    assert [
        (c["dimensions"][0]["value"], c["count"]["value"]) for c in result["byCountry"]["cells"]
    ] == [("DK", 150), ("FR", 300), ("NO", 50)]
    # One request per node for the whole selection, with JURISDICTION left to the gateway.
    assert len(nodes.calls) == 3
    assert {c.request.query.tables == [(), ("SEX",)] for c in nodes.calls} == {True}
    assert len({c.request.query_id for c in nodes.calls}) == 1
    assert result["queryId"] == nodes.calls[0].request.query_id


async def test_jurisdictions_is_public(graphql: Any) -> None:
    body = await graphql("{ jurisdictions { code nodeId minCount source verified } }", auth=None)
    assert body["data"]["jurisdictions"][0] == {
        "code": "FR",
        "nodeId": "tessera-node-fr",
        "minCount": 11,
        "source": body["data"]["jurisdictions"][0]["source"],
        "verified": True,
    }
    assert [j["code"] for j in body["data"]["jurisdictions"]] == ["FR", "DK", "NO"]


async def test_one_node_unavailable_while_others_answer(
    graphql: Any, nodes: MockNodeClient
) -> None:
    answer = counts_handler()

    def handler(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        if node.jurisdiction is Jurisdiction.DK:
            raise ConnectionRefusedError
        return answer(node, request)  # type: ignore[return-value]

    nodes.handler = handler
    body = await graphql(DIABETIC_WOMEN)
    result = body["data"]["cohort"]
    by = {n["jurisdiction"]: n for n in result["byJurisdiction"]}
    assert by["DK"]["status"] == "UNAVAILABLE"
    assert by["DK"]["count"] is None
    assert by["DK"]["error"]
    assert by["FR"]["status"] == by["NO"]["status"] == "OK"
    assert result["count"]["value"] == 350
    assert result["count"]["status"] == "PERTURBED"
    partial = [r for r in result["count"]["reasons"] if r["rule"] == "PARTIAL"]
    assert len(partial) == 1
    assert "DK (UNAVAILABLE)" in partial[0]["message"]


async def test_counts_adding_up_to_more_persons_than_exist_are_withheld(
    graphql: Any, nodes: MockNodeClient
) -> None:
    # Each passes vetting on its own (no country has more than 600M persons); pooled, they
    # would also overflow GraphQL's 32-bit Int and fail the whole answer.
    huge = {j: {(): 300_000_000 + i} for i, j in enumerate(DEFAULT_COUNTS)}
    nodes.handler = counts_handler(huge)
    body = await graphql(cohort("{}"))
    assert "errors" not in body, body
    result = body["data"]["cohort"]
    assert result["count"]["value"] is None
    assert result["count"]["status"] == "SUPPRESSED"
    assert [r["rule"] for r in result["count"]["reasons"]] == ["IMPLAUSIBLE_POOL"]
    assert {n["count"]["value"] for n in result["byJurisdiction"]} == {
        300_000_000 + i for i in range(len(huge))
    }


async def test_a_slow_node_times_out_within_the_deadline(
    graphql: Any, nodes: MockNodeClient
) -> None:
    answer = counts_handler()

    async def handler(node: NodeInfo, request: NodeRequest) -> Any:
        if node.jurisdiction is Jurisdiction.NO:
            await asyncio.sleep(30)
        return answer(node, request)

    nodes.handler = handler
    loop = asyncio.get_running_loop()
    started = loop.time()
    body = await graphql(DIABETIC_WOMEN)
    assert loop.time() - started < 3  # the deadline is 2 s
    by = {n["jurisdiction"]: n for n in body["data"]["cohort"]["byJurisdiction"]}
    assert by["NO"]["status"] == "TIMEOUT"
    assert by["FR"]["status"] == "OK"
    assert body["data"]["cohort"]["count"]["value"] == 450


async def test_no_node_answering_is_a_result_not_an_error(
    graphql: Any, nodes: MockNodeClient
) -> None:
    def down(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        raise ConnectionResetError

    nodes.handler = down
    body = await graphql(DIABETIC_WOMEN)
    assert "errors" not in body
    count = body["data"]["cohort"]["count"]
    assert count["value"] is None
    assert count["status"] == "SUPPRESSED"
    assert [r["rule"] for r in count["reasons"]] == ["NO_NODE_ANSWERED"]


async def test_unknown_jurisdiction(graphql: Any) -> None:
    body = await graphql(cohort("{ sex: FEMALE }", "jurisdictions: [FR, SE],"))
    assert error_code(body) == "UNKNOWN_JURISDICTION"
    error = body["errors"][0]
    assert "FR, DK, NO" in error["message"]
    assert error["extensions"]["members"] == ["FR", "DK", "NO"]
    assert body["data"] == {"cohort": None}


async def test_unknown_vocabulary_fails_validation(graphql: Any) -> None:
    body = await graphql(cohort('{ conditions: [{ vocabulary: ICD11, code: "E11" }] }'))
    assert error_code(body) == "GRAPHQL_VALIDATION_FAILED"


async def test_unknown_dimension_fails_validation(graphql: Any) -> None:
    body = await graphql(
        '{ cohort(request: "DR-2026-0042", criteria: {}) { breakdown(by: [SHOE_SIZE]) { by } } }'
    )
    assert error_code(body) == "GRAPHQL_VALIDATION_FAILED"


async def test_unknown_enum_in_a_variable_fails_validation(graphql: Any) -> None:
    body = await graphql(DIABETIC_WOMEN, {"j": ["FR", "XX"]})
    assert error_code(body) == "GRAPHQL_VALIDATION_FAILED"


async def test_syntax_error_fails_parsing(graphql: Any) -> None:
    assert error_code(await graphql("{ cohort(")) == "GRAPHQL_PARSE_FAILED"


async def test_age_min_above_max_is_invalid_criteria(graphql: Any) -> None:
    body = await graphql(cohort("{ age: { min: 70, max: 40 } }"))
    assert error_code(body) == "INVALID_CRITERIA"
    assert body["errors"][0]["message"] == "criteria.age: age min is greater than age max"


async def test_nested_problem_names_its_path(graphql: Any) -> None:
    body = await graphql(
        cohort(
            '{ anyOf: [{ sex: MALE }, { conditions: [{ vocabulary: ICD10, code: "E11",'
            ' window: { start: "2024-01-01", end: "2020-01-01" } }] }] }'
        )
    )
    assert error_code(body) == "INVALID_CRITERIA"
    assert body["errors"][0]["message"].startswith("criteria.anyOf[1].conditions[0].window:")


async def test_malformed_code_is_invalid_code(graphql: Any) -> None:
    sql = "E11'; DROP TABLE person;--"
    body = await graphql(cohort(f'{{ conditions: [{{ vocabulary: ICD10, code: "{sql}" }}] }}'))
    assert error_code(body) == "INVALID_CODE"
    assert sql not in str(body)
    assert body["errors"][0]["extensions"]["path"] == "criteria.conditions[0].code"


async def test_two_age_bands_in_one_breakdown_is_invalid(graphql: Any) -> None:
    body = await graphql(
        '{ cohort(request: "DR-2026-0042", criteria: {}) '
        "{ breakdown(by: [AGE_BAND_5, AGE_BAND_10]) { by } } }"
    )
    assert error_code(body) == "INVALID_CRITERIA"
    assert body["errors"][0]["message"].startswith("breakdown:")


async def test_missing_token_is_unauthenticated(graphql: Any, nodes: MockNodeClient) -> None:
    body = await graphql(cohort("{ sex: MALE }"), auth=None)
    assert error_code(body) == "UNAUTHENTICATED"
    assert nodes.calls == []


async def test_garbage_token_is_malformed(graphql: Any) -> None:
    assert error_code(await graphql(cohort("{ sex: MALE }"), auth="not-a-jwt")) == (
        "TOKEN_MALFORMED"
    )


async def test_request_mismatch(graphql: Any, nodes: MockNodeClient) -> None:
    body = await graphql(cohort("{ sex: MALE }", request="DR-2099-0001"))
    assert error_code(body) == "REQUEST_MISMATCH"
    assert nodes.calls == []


async def test_token_without_researcher_role_is_forbidden(graphql: Any, keys: Keys) -> None:
    body = await graphql(cohort("{ sex: MALE }"), auth=mint(keys, roles=["operator"]))
    assert error_code(body) == "FORBIDDEN"


async def test_jurisdiction_outside_the_approval_is_denied_locally(
    graphql: Any, nodes: MockNodeClient, keys: Keys
) -> None:
    token = mint(keys, jurisdictions=(Jurisdiction.FR, Jurisdiction.NO))
    body = await graphql(DIABETIC_WOMEN, auth=token)
    result = body["data"]["cohort"]
    by = {n["jurisdiction"]: n for n in result["byJurisdiction"]}
    assert by["DK"]["status"] == "DENIED"
    assert by["DK"]["reasons"][0]["rule"] == "APPROVAL_SCOPE"
    assert by["DK"]["reasons"][0]["jurisdiction"] == "DK"
    assert {c.node.jurisdiction for c in nodes.calls} == {Jurisdiction.FR, Jurisdiction.NO}
    assert result["count"]["value"] == 350
    assert "PARTIAL" in {r["rule"] for r in result["count"]["reasons"]}


async def test_researcher_token_is_forwarded_to_nodes(
    graphql: Any, nodes: MockNodeClient, token: str
) -> None:
    await graphql(DIABETIC_WOMEN)
    assert {c.approval_token for c in nodes.calls} == {token}


async def test_unexpected_failure_is_masked_as_internal(
    graphql: Any, nodes: MockNodeClient, monkeypatch: Any
) -> None:
    import gateway.service as service

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("SELECT secret FROM person WHERE value = 7")

    monkeypatch.setattr(service, "combine", boom)
    body = await graphql(DIABETIC_WOMEN)
    assert error_code(body) == "INTERNAL"
    assert body["errors"][0]["message"] == "Internal error."
    assert "SELECT" not in str(body)
    assert "Traceback" not in str(body)


async def test_health_and_readiness(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    body = await ready.json()
    assert (body["ready"], body["problems"]) == (True, {})
    assert body["checks"] == ["audit", "issuers", "node_client", "nodes", "redis"]
    assert {"policy", "nodes", "quorum"} <= set(body["details"])


async def test_get_queries_are_off(client: TestClient) -> None:
    response = await client.get("/graphql", params={"query": "{ jurisdictions { code } }"})
    assert response.status == 405


async def test_counts_fixture_is_consistent() -> None:
    assert sum(c[()] for c in DEFAULT_COUNTS.values()) == 500


def test_serve_prints_where_it_listens(federation_file: Path) -> None:
    env = {
        **os.environ,
        "TESSERA_GATEWAY_FEDERATION": str(federation_file),
        "TESSERA_GATEWAY_PORT": "0",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from gateway.app import serve\n"
            "from gateway.settings import GatewaySettings\n"
            "serve(GatewaySettings.from_env())",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        match = re.fullmatch(r"gateway listening on http://127\.0\.0\.1:(\d+)/graphql", line)
        assert match, line
        url = f"http://127.0.0.1:{match[1]}/readyz"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_readiness_fails_while_a_check_fails_or_while_draining(client: TestClient) -> None:
    lifecycle = client.server.app[LIFECYCLE]

    async def unreachable() -> str | None:
        return "the audit database cannot be reached"

    async def broken() -> str | None:
        raise OSError("boom /secret/path")

    lifecycle.add_check("database", unreachable)
    lifecycle.add_check("other", broken)
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["ready"] is False
    problems = (await response.json())["problems"]
    assert problems == {
        "database": "the audit database cannot be reached",
        "other": "check failed (OSError)",
    }
    lifecycle.checks.pop("database")
    lifecycle.checks.pop("other")
    assert (await client.get("/readyz")).status == 200
    lifecycle.draining = True
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["problems"] == {"lifecycle": "shutting down"}
    assert (await client.get("/healthz")).status == 200  # alive all the same
