"""Limits on what one request may ask, through the real HTTP endpoint: each refusal has its
own stable code, nothing is sent to a node, and nothing of the request is echoed back."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from graphql import get_introspection_query

from gateway.app import MAX_REQUEST_BYTES, create_app
from gateway.graphql.limits import MAX_ALIASES, MAX_DEPTH, MAX_EXPANDED_FIELDS, MAX_TOKENS
from gateway.nodes import MockNodeClient
from gateway.ratelimit import Bucket, MemoryRateLimiter, SqliteRateLimiter
from gateway.settings import GatewaySettings
from policies.loader import DEFAULT_DIRECTORY, load_policy_set
from policies.policy_set import PolicySet
from schema.errors import ErrorCode, TesseraError
from tessera.local import policies_with_rate_limits
from tests.gateway.gateway_kit import REQUEST_ID, Keys, assert_clean_error, error_code, mint


def cohort(breakdown: str = "", extra: str = "", criteria: str = "{sex: MALE}") -> str:
    return (
        f'cohort(request: "{REQUEST_ID}", {extra} criteria: {criteria}) '
        f"{{ count {{ value }} {breakdown} }}"
    )


@pytest.fixture
async def app_with(settings: GatewaySettings, nodes: MockNodeClient) -> AsyncIterator[Any]:
    """Start the gateway with other settings (and optionally another policy set)."""
    clients: list[TestClient] = []

    async def start(policy_set: PolicySet | None = None, **changes: Any) -> TestClient:
        changed = GatewaySettings.from_env({}, federation=settings.federation, **changes)
        app = create_app(changed, node_client=nodes, policy_set=policy_set)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


async def post(client: TestClient, payload: Any, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post("/graphql", json=payload, headers=headers)
    assert response.content_type == "application/json"
    return response.status, await response.json()


# -- the document ---------------------------------------------------------------------------
async def test_introspection_is_off_by_default(graphql: Any, nodes: MockNodeClient) -> None:
    body = await graphql("{ __schema { queryType { name } } }", auth=None)
    assert_clean_error(body, "INTROSPECTION_DISABLED")
    body = await graphql('{ __type(name: "Query") { name } }', auth=None)
    assert_clean_error(body, "INTROSPECTION_DISABLED")


async def test_typename_is_not_introspection(graphql: Any) -> None:
    body = await graphql("{ __typename }", auth=None)
    assert body == {"data": {"__typename": "Query"}}


async def test_the_full_introspection_query_works_when_enabled(app_with: Any) -> None:
    client = await app_with(introspection=True)
    status, body = await post(client, {"query": get_introspection_query(descriptions=True)})
    assert status == 200
    assert "errors" not in body
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_a_too_deep_query_is_refused(app_with: Any) -> None:
    client = await app_with(introspection=True)
    chain = "ofType { " * MAX_DEPTH + "name" + " }" * MAX_DEPTH
    query = f"{{ __schema {{ types {{ fields {{ type {{ {chain} }} }} }} }} }}"
    status, body = await post(client, {"query": query})
    assert status == 200
    assert_clean_error(body, "QUERY_TOO_DEEP")


async def test_too_many_aliases_are_refused(graphql: Any) -> None:
    fields = " ".join(f"a{i}: jurisdictions {{ code }}" for i in range(MAX_ALIASES + 1))
    assert_clean_error(await graphql(f"{{ {fields} }}", auth=None), "TOO_MANY_ALIASES")


async def test_as_many_aliases_as_allowed_are_served(graphql: Any) -> None:
    fields = " ".join(f"a{i}: jurisdictions {{ code }}" for i in range(MAX_ALIASES))
    body = await graphql(f"{{ {fields} }}", auth=None)
    assert len(body["data"]) == MAX_ALIASES


async def test_too_many_tokens_are_refused(graphql: Any) -> None:
    fields = " ".join("__typename" for _ in range(MAX_TOKENS + 1))
    assert_clean_error(await graphql(f"{{ {fields} }}", auth=None), "TOO_MANY_TOKENS")


async def test_exponential_fragments_are_refused_quickly(graphql: Any) -> None:
    # Each fragment spreads the next one twice: 2^40 fields once expanded.
    fragments = " ".join(
        f"fragment F{i} on CohortResult {{ ...F{i + 1} ...F{i + 1} }}" for i in range(40)
    )
    query = (
        f'{{ cohort(request: "{REQUEST_ID}", criteria: {{}}) {{ ...F0 }} }} {fragments} '
        "fragment F40 on CohortResult { queryId }"
    )
    started = time.perf_counter()
    body = await graphql(query)
    assert_clean_error(body, "QUERY_TOO_COMPLEX")
    assert str(MAX_EXPANDED_FIELDS) in body["errors"][0]["message"]
    assert time.perf_counter() - started < 5  # linear, not 2^40: a hang would fail this


# -- the cost of what is asked --------------------------------------------------------------
async def test_a_breakdown_by_four_dimensions_across_the_federation_is_too_costly(
    graphql: Any, nodes: MockNodeClient
) -> None:
    query = (
        "{ "
        + cohort(
            "breakdown(by: [SEX, AGE_BAND_5, CALENDAR_YEAR, JURISDICTION]) "
            "{ cells { count { value } } }",
            criteria="{}",
        )
        + " }"
    )
    body = await graphql(query)
    assert_clean_error(body, "QUERY_TOO_COMPLEX")
    extensions = body["errors"][0]["extensions"]
    # 3 nodes × (1 + 3 sexes (UNKNOWN too) × 27 age bands × 128 years: 1900 to the reference
    # date's 2026, and UNKNOWN)
    assert (extensions["cost"], extensions["budget"]) == (3 * (1 + 3 * 27 * 128), 20_000)
    assert nodes.calls == []


async def test_bounding_the_criteria_makes_the_same_breakdown_affordable(graphql: Any) -> None:
    criteria = (
        '{ age: {min: 40, max: 69}, conditions: [{ vocabulary: ICD10, code: "E11", '
        'window: { start: "2015-01-01", end: "2024-12-31" } }] }'
    )
    query = (
        "{ "
        + cohort(
            "breakdown(by: [SEX, AGE_BAND_5, CALENDAR_YEAR, JURISDICTION]) { by }",
            criteria=criteria,
        )
        + " }"
    )
    body = await graphql(query)
    assert "errors" not in body, body


async def test_the_budget_is_shared_by_every_field_of_a_request(
    app_with: Any, nodes: MockNodeClient, token: str
) -> None:
    # Each field: 3 nodes × (1 + 3 × 27) = 246.
    client = await app_with(max_query_cost=500)
    one = cohort("breakdown(by: [SEX, AGE_BAND_5]) { by }", criteria="{}")
    _, body = await post(client, {"query": f"{{ a: {one} b: {one} }}"}, token)
    assert "errors" not in body
    _, body = await post(client, {"query": f"{{ a: {one} b: {one} c: {one} }}"}, token)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["QUERY_TOO_COMPLEX"]


# -- HTTP ------------------------------------------------------------------------------------
async def test_a_too_large_body_is_refused(client: TestClient, nodes: MockNodeClient) -> None:
    padding = " " * (MAX_REQUEST_BYTES + 1)
    response = await client.post(
        "/graphql",
        data='{"query": "{ jurisdictions { code } }"' + padding + "}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 413
    assert_clean_error(await response.json(), "BODY_TOO_LARGE")


async def test_a_batch_within_the_limit_is_served(client: TestClient) -> None:
    status, body = await post(client, [{"query": "{ __typename }"}] * 4)
    assert status == 200
    assert body == [{"data": {"__typename": "Query"}}] * 4


async def test_a_too_large_batch_is_refused(client: TestClient) -> None:
    status, body = await post(client, [{"query": "{ __typename }"}] * 5)
    assert status == 400
    assert_clean_error(body, "BATCH_TOO_LARGE")


async def test_batching_can_be_turned_off(app_with: Any) -> None:
    client = await app_with(max_batch=1)
    status, body = await post(client, [{"query": "{ __typename }"}] * 2)
    assert (status, error_code(body)) == (400, "BATCH_TOO_LARGE")


@pytest.mark.parametrize("payload", ['"query"', "42", "[1, 2]", "null", "[]", '{"query": 1}'])
async def test_a_body_that_is_no_graphql_request_is_a_bad_request(
    client: TestClient, payload: str
) -> None:
    response = await client.post(
        "/graphql", data=payload, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert_clean_error(await response.json(), "BAD_REQUEST")


async def test_get_queries_and_unknown_routes_answer_coded_json(client: TestClient) -> None:
    response = await client.get("/graphql", params={"query": "{ jurisdictions { code } }"})
    assert response.status == 405
    assert_clean_error(await response.json(), "METHOD_NOT_ALLOWED")
    response = await client.get("/graphql/../etc/passwd")
    assert response.status == 404
    assert_clean_error(await response.json(), "NOT_FOUND")


# -- input -------------------------------------------------------------------------------------
SQL = "E11'; DROP TABLE person;--"


async def test_a_code_containing_sql_is_refused(graphql: Any, nodes: MockNodeClient) -> None:
    criteria = f'{{ conditions: [{{ vocabulary: ICD10, code: "{SQL}" }}] }}'
    body = await graphql("{ " + cohort(criteria=criteria) + " }")
    assert_clean_error(body, "INVALID_CODE", "DROP", "person")
    assert nodes.calls == []


async def test_a_code_containing_sql_in_a_variable_is_refused(graphql: Any) -> None:
    query = (
        "query Q($c: String!) { "
        + cohort(criteria="{ conditions: [{ vocabulary: SNOMED, code: $c }] }")
        + " }"
    )
    body = await graphql(query, {"c": SQL})
    assert_clean_error(body, "INVALID_CODE", "DROP", "person")


async def test_validation_errors_quote_no_value_and_suggest_no_name(graphql: Any) -> None:
    body = await graphql(
        "query Q($s: Sex) { " + cohort(criteria="{ sex: $s }") + " }", {"s": "<script>x</script>"}
    )
    assert_clean_error(body, "GRAPHQL_VALIDATION_FAILED", "<script>", "script")
    body = await graphql("{ cohortt { queryId } }")
    assert_clean_error(body, "GRAPHQL_VALIDATION_FAILED", "Did you mean", "cohort'")
    body = await graphql('{ cohort(request: "x\\u0000<b>", criteria: {sex: FEMAL}) { queryId } }')
    assert_clean_error(body, "GRAPHQL_VALIDATION_FAILED", "FEMAL", "<b>")


async def test_a_string_over_its_bound_is_invalid_criteria(graphql: Any) -> None:
    body = await graphql(f'{{ cohort(request: "{"R" * 100}", criteria: {{}}) {{ queryId }} }}')
    assert error_code(body) in {"REQUEST_MISMATCH", "INVALID_CRITERIA"}
    assert "R" * 100 not in json.dumps(body)


# -- rate limits -------------------------------------------------------------------------------
async def test_the_researcher_bucket_refuses_with_when_to_retry(
    app_with: Any, nodes: MockNodeClient, token: str
) -> None:
    client = await app_with(rate_per_researcher_per_minute=2)
    query = {"query": "{ " + cohort() + " }"}
    for _ in range(2):
        assert "errors" not in (await post(client, query, token))[1]
    response = await client.post(
        "/graphql", json=query, headers={"Authorization": f"Bearer {token}"}
    )
    body = await response.json()
    assert_clean_error(body, "RATE_LIMITED")
    retry = body["errors"][0]["extensions"]["retryAfter"]
    assert 1 <= retry <= 30  # one token back at 2 per minute
    assert response.headers["Retry-After"] == str(retry)
    assert len(nodes.calls) == 2 * 3


async def test_the_approval_bucket_is_shared_by_the_researchers_of_an_approval(
    app_with: Any, keys: Keys
) -> None:
    client = await app_with(rate_per_approval_per_day=2)
    query = {"query": "{ " + cohort() + " }"}
    for subject in ("alice", "bob"):
        assert "errors" not in (await post(client, query, mint(keys, sub=subject)))[1]
    _, body = await post(client, query, mint(keys, sub="carol"))
    assert_clean_error(body, "RATE_LIMITED")
    assert body["errors"][0]["extensions"]["retryAfter"] > 3600  # the day bucket refills slowly
    # Another approval has its own bucket.
    other = mint(keys, sub="carol", request_id="DR-2026-0043")
    query2 = {"query": "{ " + cohort().replace(REQUEST_ID, "DR-2026-0043") + " }"}
    assert "errors" not in (await post(client, query2, other))[1]


async def test_the_limit_is_the_strictest_of_the_jurisdictions_asked(
    app_with: Any, token: str, tmp_path: Path
) -> None:
    directory = tmp_path / "policies"
    shutil.copytree(DEFAULT_DIRECTORY, directory)
    dk = directory / "jurisdictions" / "dk.toml"
    text = dk.read_text()
    old = "[rate_limits.per_researcher_per_minute]\nvalue = 60"
    assert old in text
    dk.write_text(text.replace(old, "[rate_limits.per_researcher_per_minute]\nvalue = 1"))
    client = await app_with(policy_set=load_policy_set(directory))
    with_dk = {"query": "{ " + cohort(extra="jurisdictions: [FR, DK],") + " }"}
    without_dk = {"query": "{ " + cohort(extra="jurisdictions: [FR, NO],") + " }"}
    assert "errors" not in (await post(client, with_dk, token))[1]
    assert error_code((await post(client, with_dk, token))[1]) == "RATE_LIMITED"
    # FR and NO allow 60 a minute: a query that leaves DK out is not held by DK's limit.
    assert "errors" not in (await post(client, without_dk, token))[1]


async def test_settings_never_loosen_the_policy(app_with: Any, token: str, tmp_path: Path) -> None:
    # Three a minute: a token comes back only after 20 s, however busy the machine (with the
    # shipped 60 a minute, 60 questions taking over a second let the 61st through).
    policies = policies_with_rate_limits(tmp_path / "policies", per_minute=3, per_day=1000)
    client = await app_with(
        policy_set=load_policy_set(policies), rate_per_researcher_per_minute=10_000
    )
    query = {"query": "{ " + cohort() + " }"}
    for _ in range(3):
        assert "errors" not in (await post(client, query, token))[1]
    assert error_code((await post(client, query, token))[1]) == "RATE_LIMITED"


async def test_the_memory_limiter_takes_from_every_bucket_or_none() -> None:
    now = [0.0]
    limiter = MemoryRateLimiter(clock=lambda: now[0])
    minute = Bucket("r", capacity=2, per_second=2 / 60)
    day = Bucket("a", capacity=3, per_second=3 / 86_400)
    assert await limiter.acquire([minute, day]) == 0
    assert await limiter.acquire([minute, day]) == 0
    assert await limiter.acquire([minute, day]) == pytest.approx(30)
    now[0] = 30.0
    assert await limiter.acquire([minute, day]) == 0  # the day bucket's last token
    now[0] = 90.0
    wait = await limiter.acquire([minute, day])
    assert wait == pytest.approx(86_400 / 3 - 90, rel=1e-3)
    assert await limiter.acquire([minute]) == 0  # the refused call took nothing


async def test_a_full_memory_limiter_drops_full_buckets_first() -> None:
    now = [0.0]
    limiter = MemoryRateLimiter(max_buckets=2, clock=lambda: now[0])
    assert await limiter.acquire([Bucket("a", 2, 1.0)]) == 0
    assert await limiter.acquire([Bucket("b", 2, 0.001)]) == 0
    now[0] = 5.0  # "a" has refilled, "b" has not
    assert await limiter.acquire([Bucket("c", 2, 1.0)]) == 0
    assert len(limiter) == 2


async def test_the_sqlite_limiter_takes_from_every_bucket_or_none(tmp_path: Path) -> None:
    now = [1000.0]
    limiter = SqliteRateLimiter(tmp_path / "ratelimit.sqlite3", clock=lambda: now[0])
    minute = Bucket("r", capacity=2, per_second=2 / 60)
    day = Bucket("a", capacity=3, per_second=3 / 86_400)
    try:
        assert await limiter.acquire([minute, day]) == 0
        assert await limiter.acquire([minute, day]) == 0
        assert await limiter.acquire([minute, day]) == pytest.approx(30)
        now[0] = 1030.0
        assert await limiter.acquire([minute, day]) == 0  # the day bucket's last token
        now[0] = 1090.0
        wait = await limiter.acquire([minute, day])
        assert wait == pytest.approx(86_400 / 3 - 90, rel=1e-3)
        assert await limiter.acquire([minute]) == 0  # the refused call took nothing
    finally:
        await limiter.close()


async def test_the_sqlite_limiter_remembers_across_instances_and_shares_atomically(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ratelimit.sqlite3"
    day = Bucket("approval:x:FR", capacity=5, per_second=5 / 86_400)
    first = SqliteRateLimiter(path)
    assert await first.acquire([day]) == 0
    # Not closed, as after SIGKILL: the next processes open the same file.
    others = [SqliteRateLimiter(path) for _ in range(3)]
    try:
        waits = await asyncio.gather(*(o.acquire([day]) for o in others * 3))
        assert sum(w == 0 for w in waits) == 4  # what the first one left, however interleaved
        assert all(w > 17_000 for w in waits if w)  # a token a day every 4.8 hours
    finally:
        for limiter in [first, *others]:
            await limiter.close()


async def test_the_sqlite_limiter_purges_full_buckets_and_fails_closed(tmp_path: Path) -> None:
    now = [0.0]
    limiter = SqliteRateLimiter(tmp_path / "r.sqlite3", clock=lambda: now[0], purge_every=2)
    assert await limiter.acquire([Bucket("a", 2, 1.0)]) == 0
    now[0] = 5.0  # "a" has refilled: the purge at the second call drops it
    assert await limiter.acquire([Bucket("b", 2, 0.001)]) == 0
    path = limiter.path
    await limiter.close()
    with sqlite3.connect(path) as db:
        assert [row[0] for row in db.execute("SELECT key FROM bucket")] == ["b"]
    blocker = tmp_path / "file"
    blocker.write_text("")
    broken = SqliteRateLimiter(blocker / "r.sqlite3")
    with pytest.raises(TesseraError) as down:
        await broken.acquire([Bucket("a", 2, 1.0)])
    assert down.value.code is ErrorCode.TEMPORARILY_UNAVAILABLE
    await broken.close()


# -- which operation runs -------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["A" * 5000, "<script>alert(1)</script>", "", 5, "Óp"],
    ids=["long", "script", "empty", "number", "not-ascii"],
)
async def test_an_operation_name_that_is_no_graphql_name_is_refused_unquoted(
    client: TestClient, name: Any
) -> None:
    status, body = await post(client, {"query": "query A { __typename }", "operationName": name})
    assert status == 400
    assert_clean_error(body, "GRAPHQL_VALIDATION_FAILED", "AAAA", "script")
    assert body["errors"][0]["message"] == (
        "operationName must be a GraphQL name of at most 128 characters"
    )


async def test_an_unknown_operation_name_is_not_quoted(client: TestClient) -> None:
    query = "query A { __typename } query B { __typename }"
    status, body = await post(client, {"query": query, "operationName": "Secret" * 20})
    assert status == 400
    assert_clean_error(body, "GRAPHQL_VALIDATION_FAILED", "Secret")
    assert body["errors"][0]["message"] == (
        "no operation in the document has the name given as operationName"
    )


async def test_several_operations_need_an_operation_name(client: TestClient) -> None:
    query = "query A { __typename } query B { jurisdictions { code } }"
    status, body = await post(client, {"query": query})
    assert status == 200
    assert_clean_error(body, "GRAPHQL_VALIDATION_FAILED")
    assert body["errors"][0]["message"] == (
        "the document holds several operations: name the one to run in operationName"
    )
    assert body.get("data") is None
    status, body = await post(client, {"query": query, "operationName": "B"})
    assert (status, list(body["data"])) == (200, ["jurisdictions"])
    # A cached validation (the same document again) refuses it too.
    assert_clean_error((await post(client, {"query": query}))[1], "GRAPHQL_VALIDATION_FAILED")
