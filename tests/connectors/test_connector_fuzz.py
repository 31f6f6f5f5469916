"""Property-based fuzzing of node request bodies through the connector's HTTP endpoint, on
the fixture database. Bodies are signed correctly and carry a valid approval, so that they
get past verification and reach parsing, compiling and the database: every answer is a
`NodeResponse` or a coded `NodeError`, never a 500, never a trace."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.app import create_app
from connectors.settings import ConnectorSettings
from schema.codes import Dimension, Jurisdiction, Sex, Vocabulary
from schema.errors import ErrorCode
from schema.wire import QUERY_PATH, NodeError, NodeResponse
from tests.connectors.connector_kit import HDAB_ISSUER, REQUEST_ID, approval_token

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
Post = Callable[[bytes], tuple[int, Any]]


@pytest.fixture
def post(
    omop_db: Path, gateway_public_pem: Path, hdab_public_pem: Path, sign: Callable[..., str]
) -> Iterator[Post]:
    loop = asyncio.new_event_loop()
    app = create_app(
        ConnectorSettings(
            jurisdiction=Jurisdiction.FR,
            database=omop_db,
            gateway_keys={"gateway-2024": gateway_public_pem},
            hdab_issuer=HDAB_ISSUER,
            hdab_public_key=hdab_public_pem,
        )
    )
    client: TestClient = TestClient(TestServer(app), loop=loop)
    loop.run_until_complete(client.start_server())
    approval = approval_token()

    async def send(body: bytes) -> tuple[int, Any]:
        headers = {
            "Authorization": f"Bearer {sign(body)}",
            "X-Tessera-Approval": approval,
            "Content-Type": "application/json",
        }
        response = await client.post(QUERY_PATH, data=body, headers=headers)
        assert response.content_type == "application/json"
        return response.status, await response.json()

    yield lambda body: loop.run_until_complete(send(body))
    loop.run_until_complete(client.close())
    loop.close()


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


_NAME_OR_DATE = re.compile(r"[_A-Za-z0-9]*|\d{4}-\d\d-\d\d")


def assert_clean(status: int, answer: Any, sent: Any = None) -> None:
    """A response or a coded error that quotes nothing it was sent (but names and dates)."""
    assert status in (200, 400, 403, 413), (status, answer)
    if status == 200:
        NodeResponse.model_validate(answer)
        return
    error = NodeError.model_validate(answer)
    assert error.code is not ErrorCode.INTERNAL
    assert "Traceback" not in error.message
    assert "SELECT" not in error.message
    for value in strings(sent):
        if len(value) >= 4 and not _NAME_OR_DATE.fullmatch(value):
            assert value not in error.message, (value, error)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=15,
)


@FUZZ
@given(body=json_values)
def test_any_json(post: Post, body: Any) -> None:
    assert_clean(*post(json.dumps(body).encode()), body)


@FUZZ
@given(body=st.binary(max_size=300))
def test_any_bytes(post: Post, body: bytes) -> None:
    assert_clean(*post(body))


def junk_or(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy | json_values


def names(enum: Any) -> st.SearchStrategy[str]:
    return st.sampled_from([e.value for e in enum])


dates = st.dates(dt.date(1850, 1, 1), dt.date(2150, 12, 31)).map(str)
codes = st.sampled_from(["E11", "E11.9", "I10", "A10", "A10BA02", "4548-4", "44054006"]) | (
    st.text(max_size=20)
)
event = st.fixed_dictionaries(
    {"vocabulary": junk_or(names(Vocabulary)), "code": codes},
    optional={
        "descendants": st.booleans(),
        "window": st.fixed_dictionaries({}, optional={"start": dates, "end": dates}),
        "value": st.fixed_dictionaries(
            {}, optional={"min": st.floats(allow_nan=False), "max": st.integers()}
        ),
    },
)
criteria = st.recursive(
    st.fixed_dictionaries(
        {},
        optional={
            "sex": junk_or(names(Sex)),
            "age": st.fixed_dictionaries(
                {}, optional={"min": st.integers(-5, 140), "max": st.integers(-5, 140)}
            ),
            "conditions": st.lists(event, max_size=3),
            "drugs": st.lists(event, max_size=2),
            "measurements": st.lists(event, max_size=2),
        },
    ),
    lambda inner: st.fixed_dictionaries({"any_of": st.lists(inner, max_size=3)}),
    max_leaves=5,
)
node_requests = st.fixed_dictionaries(
    {
        "protocol": st.just("tessera/1") | st.text(max_size=10),
        "query_id": st.just("q-00000001") | st.text(max_size=70),
        "request_id": st.just(REQUEST_ID) | st.text(max_size=20),
        "jurisdiction": st.just("FR") | names(Jurisdiction),
        "query": st.fixed_dictionaries(
            {"criteria": criteria, "reference_date": dates},
            optional={
                "tables": st.lists(
                    st.lists(junk_or(names(Dimension)), max_size=5).map(tuple), max_size=4
                ),
                "measures": st.lists(st.just({"kind": "PERSON_COUNT"}), max_size=2),
            },
        ),
    },
    optional={"extra": json_values},
)


@FUZZ
@given(request=node_requests)
def test_node_requests(post: Post, request: dict[str, Any]) -> None:
    assert_clean(*post(json.dumps(request).encode()), request)


# Well-typed requests: valid names and codes, so that most reach the compiler and DuckDB.
VALID_CODES = [
    ("ICD10", "E11"),
    ("ICD10", "E11.9"),
    ("ICD10", "I10"),
    ("SNOMED", "44054006"),
    ("ATC", "A10"),
    ("ATC", "A10BA02"),
    ("RxNorm", "6809"),
    ("LOINC", "4548-4"),
    ("SNOMED", "999999999"),  # well-formed, unknown
]
valid_dates = st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)).map(str)
valid_event = st.sampled_from(VALID_CODES).flatmap(
    lambda pair: st.fixed_dictionaries(
        {"vocabulary": st.just(pair[0]), "code": st.just(pair[1])},
        optional={
            "descendants": st.booleans(),
            "window": st.fixed_dictionaries({}, optional={"start": valid_dates}),
            "value": st.fixed_dictionaries({}, optional={"min": st.floats(0, 20)}),
        },
    )
)
valid_criteria = st.recursive(
    st.fixed_dictionaries(
        {},
        optional={
            "sex": names(Sex),
            "age": st.fixed_dictionaries(
                {}, optional={"min": st.integers(0, 130), "max": st.integers(0, 130)}
            ),
            "conditions": st.lists(valid_event, max_size=2),
            "drugs": st.lists(valid_event, max_size=2),
            "measurements": st.lists(valid_event, max_size=1),
        },
    ),
    lambda inner: st.fixed_dictionaries({"any_of": st.lists(inner, min_size=1, max_size=2)}),
    max_leaves=4,
)
node_dimensions = [d.value for d in Dimension if d is not Dimension.JURISDICTION]
valid_requests = st.fixed_dictionaries(
    {
        "query_id": st.just("q-00000001"),
        "request_id": st.just(REQUEST_ID),
        "jurisdiction": st.just("FR"),
        "query": st.fixed_dictionaries(
            {
                "criteria": valid_criteria,
                "reference_date": valid_dates,
                "tables": st.lists(
                    st.lists(st.sampled_from(node_dimensions), max_size=3, unique=True),
                    max_size=3,
                ).map(lambda tables: [[], *tables]),
            }
        ),
    }
)


@FUZZ
@given(request=valid_requests)
def test_well_typed_node_requests(post: Post, request: dict[str, Any]) -> None:
    assert_clean(*post(json.dumps(request).encode()), request)
