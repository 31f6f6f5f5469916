"""Property-based fuzzing of the query input through the real HTTP endpoint: whatever a
client sends, the answer is a coded error or an answer; never a 500, never INTERNAL, never a
trace."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.nodes import MockNodeClient
from gateway.ratelimit import Bucket
from gateway.settings import GatewaySettings
from schema.codes import Dimension, Jurisdiction, Sex, Vocabulary
from schema.errors import ErrorCode
from tests.gateway.gateway_kit import REQUEST_ID

CLEAN_CODES = {c.value for c in ErrorCode} - {ErrorCode.INTERNAL.value}
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
Post = Callable[[bytes], tuple[int, Any]]


class Unlimited:
    """A rate limiter that never refuses: the fuzzer asks far more than a researcher may,
    and the limits are tested on their own (test_gateway_limits)."""

    async def acquire(self, buckets: Sequence[Bucket]) -> float:
        return 0.0


@pytest.fixture
def post(settings: GatewaySettings, nodes: MockNodeClient, token: str) -> Iterator[Post]:
    """A blocking POST to a gateway on its own event loop: hypothesis drives the examples
    synchronously."""
    loop = asyncio.new_event_loop()
    app = create_app(settings, node_client=nodes, rate_limiter=Unlimited())
    client: TestClient = TestClient(TestServer(app), loop=loop)
    loop.run_until_complete(client.start_server())
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def send(body: bytes) -> tuple[int, Any]:
        response = await client.post("/graphql", data=body, headers=headers)
        assert response.content_type == "application/json"
        return response.status, await response.json()

    yield lambda body: loop.run_until_complete(send(body))
    loop.run_until_complete(client.close())
    loop.close()


_NAME_OR_DATE = re.compile(r"[_A-Za-z0-9]*|\d{4}-\d\d-\d\d")


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def ask(post: Post, variables: Any) -> tuple[int, Any]:
    return post(json.dumps({"query": QUERY, "variables": variables}).encode())


def replaced(value: Any, old: str, new: str) -> Any:
    """`value` with every string (and key) equal to `old` replaced by `new`."""
    if isinstance(value, str):
        return new if value == old else value
    if isinstance(value, dict):
        return {replaced(k, old, new): replaced(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [replaced(item, old, new) for item in value]
    return value


def error_text(answer: Any) -> str:
    answers = answer if isinstance(answer, list) else [answer]
    errors = [e for one in answers for e in one.get("errors") or ()]
    return json.dumps(errors, ensure_ascii=False)


def assert_clean(
    status: int,
    answer: Any,
    sent: Any = None,
    again: Callable[[Any], tuple[int, Any]] | None = None,
) -> None:
    """A coded answer with no trace, and no echo of a value the client sent (names and
    dates aside: the schema's own names and the model's date bounds may be quoted). A value
    found in the errors is an echo unless the errors still hold it when the same request is
    sent (`again`) with that value replaced: then it is the server's own wording (" or "
    is in "must be an object or null")."""
    assert status in (200, 400, 413), (status, answer)
    answers = answer if isinstance(answer, list) else [answer]
    errors = [e for one in answers for e in one.get("errors") or ()]
    text = error_text(answer)
    assert "Traceback" not in text
    for error in errors:
        assert error["extensions"]["code"] in CLEAN_CODES, error
        assert len(error["message"]) <= 400
    for value in strings(sent):
        if len(value) >= 4 and not _NAME_OR_DATE.fullmatch(value) and value in text:
            assert again is not None, (value, errors)
            _, other = again(replaced(sent, value, "\x01" * len(value)))
            assert value in error_text(other), (value, errors)


# -- any JSON at all -----------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


@FUZZ
@given(body=json_values)
def test_any_json_body(post: Post, body: Any) -> None:
    assert_clean(*post(json.dumps(body).encode()), body, lambda b: post(json.dumps(b).encode()))


@FUZZ
@given(body=st.binary(max_size=300))
def test_any_bytes(post: Post, body: bytes) -> None:
    assert_clean(*post(body))


@FUZZ
@given(query=st.text(max_size=300), variables=json_values)
def test_any_query_text(post: Post, query: str, variables: Any) -> None:
    def again(v: Any) -> tuple[int, Any]:
        return post(json.dumps({"query": query, "variables": v}).encode())

    assert_clean(*again(variables), variables, again)


# -- well-formed documents, fuzzed arguments -----------------------------------------------
def member(enum: Any) -> st.SearchStrategy[str]:
    return st.sampled_from([e.name for e in enum])


def enum_or_junk(enum: Any) -> st.SearchStrategy[Any]:
    return member(enum) | st.text(max_size=12)


def criteria(junk: bool) -> st.SearchStrategy[Any]:
    """Criteria as GraphQL variables: of the right GraphQL types (so that they reach the
    planner), or with junk of any type too."""
    enum = enum_or_junk if junk else member
    codes = st.one_of(
        st.sampled_from(["E11", "I10", "A10BA02", "4548-4", "44054006", "1503297", "E11.9"]),
        st.text(max_size=40),
        st.sampled_from(["E11'; DROP TABLE person;--", "' OR 1=1 --", "%", "_", "\x00"]),
    )
    dates = st.dates().map(str) | (st.text(max_size=12) if junk else st.nothing())
    event = {
        "descendants": st.booleans(),
        "window": st.fixed_dictionaries({}, optional={"start": dates, "end": dates}),
    }
    values = st.fixed_dictionaries(
        {}, optional={"min": st.floats(allow_nan=False), "max": st.integers(-1000, 1000)}
    )
    required = {"vocabulary": enum(Vocabulary), "code": codes}
    events = st.fixed_dictionaries(required, optional=event)
    measurements = st.fixed_dictionaries(required, optional={**event, "value": values})
    ints = st.integers(-(2**31), 2**31 - 1) | st.integers(0, 130)
    if junk:
        ints |= st.integers() | st.text(max_size=5)
    return st.recursive(
        st.fixed_dictionaries(
            {},
            optional={
                "sex": enum(Sex),
                "age": st.fixed_dictionaries({}, optional={"min": ints, "max": ints}),
                "conditions": st.lists(events, max_size=3),
                "drugs": st.lists(events, max_size=2),
                "measurements": st.lists(measurements, max_size=2),
            },
        ),
        lambda inner: st.fixed_dictionaries({"anyOf": st.lists(inner, max_size=3)}),
        max_leaves=6,
    )


QUERY = """query Q($request: String!, $j: [Jurisdiction!], $c: CriteriaInput!,
                   $by: [Dimension!]!, $date: Date) {
  cohort(request: $request, jurisdictions: $j, criteria: $c, referenceDate: $date) {
    queryId count { value status reasons { rule } }
    byJurisdiction { jurisdiction status error }
    breakdown(by: $by) { cells { dimensions { name value } count { value } } }
  }
}"""


def cohort_variables(junk: bool) -> st.SearchStrategy[Any]:
    enum = enum_or_junk if junk else member
    return st.fixed_dictionaries(
        {
            "request": st.just(REQUEST_ID) | st.text(max_size=70),
            "j": st.none() | st.lists(enum(Jurisdiction), max_size=4),
            "c": criteria(junk),
            "by": st.lists(enum(Dimension), max_size=5),
            "date": st.none() | st.dates().map(str) | (st.text(max_size=12) if junk else st.none()),
        }
    )


@FUZZ
@given(variables=cohort_variables(junk=False))
def test_cohort_arguments(post: Post, variables: Any) -> None:
    assert_clean(*ask(post, variables), variables, lambda v: ask(post, v))


@FUZZ
@given(variables=cohort_variables(junk=True))
def test_cohort_arguments_with_junk(post: Post, variables: Any) -> None:
    assert_clean(*ask(post, variables), variables, lambda v: ask(post, v))
