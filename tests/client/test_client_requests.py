"""What the clients send and how they fail: headers, the question's document and variables,
typed errors with the gateway's stable codes (sync and async, over a fake gateway)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from schema.errors import ErrorCode
from tessera.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    InvalidQuery,
    PermissionDenied,
    RateLimited,
    TesseraClientError,
    Unavailable,
    default_request,
    event,
    survival,
)
from tessera.client.errors import error_class
from tessera.client.transport import Reply
from tests.client.client_kit import (
    cohort_with_a_denied_node,
    error,
    gateway,
    graphql_reply,
    unsigned_permit,
)

URL = "http://gateway.test/graphql"
FR = unsigned_permit("DR-1-FR", "DR-1")
DE = unsigned_permit("DR-1-DE", "DR-1")


def test_the_request_carries_the_token_and_one_header_per_permit() -> None:
    fake = gateway(graphql_reply(cohort_with_a_denied_node()))
    client = Client(URL, token="id.token.sig", permits=[FR, DE], transport=fake)
    answer = client.cohort(
        concepts=["ICD10:E11", "ATC:A10"], sex="female", age=(40, 69), by=["SEX"]
    )
    assert answer.trace_id == "0af7651916cd43dd8448eb211c80319c"
    url, body, headers = fake.requests[0]
    assert url == URL
    assert ("Authorization", "Bearer id.token.sig") in headers
    assert [v for k, v in headers if k == "X-Tessera-Permit"] == [FR, DE]
    sent = json.loads(body)
    assert sent["variables"]["request"] == "DR-1"  # the permits' application
    assert sent["variables"]["criteria"] == {
        "conditions": [{"vocabulary": "ICD10", "code": "E11", "descendants": True}],
        "drugs": [{"vocabulary": "ATC", "code": "A10", "descendants": True}],
        "sex": "FEMALE",
        "age": {"min": 40, "max": 69},
    }
    assert "b0: breakdown(by: [SEX])" in sent["query"]
    assert "count {" in sent["query"]


def test_ranges_exclusions_and_counts_travel_as_written() -> None:
    fake = gateway(graphql_reply(cohort_with_a_denied_node()))
    client = Client(URL, token="id.token.sig", permits=[FR, DE], transport=fake)
    never_insulin = {"vocabulary": "ATC", "code": "A10A", "exclude": True}
    client.cohort(concepts=["ICD10:F70-F79", "ATC:A10BA-A10BX", "LOINC:4548-4", never_insulin])
    sent = json.loads(fake.requests[0][1])["variables"]["criteria"]
    assert sent["conditions"] == [
        {"vocabulary": "ICD10", "code": "F70", "descendants": True, "to": "F79"}
    ]
    assert sent["drugs"] == [
        {"vocabulary": "ATC", "code": "A10BA", "descendants": True, "to": "A10BX"},
        never_insulin,
    ]
    # A LOINC code's dash is its own, not a range.
    assert sent["measurements"] == [{"vocabulary": "LOINC", "code": "4548-4", "descendants": True}]


def test_tokens_can_be_files_and_never_show_in_repr(tmp_path: Path) -> None:
    (tmp_path / "me.jwt").write_text("id.token.sig\n")
    (tmp_path / "fr.jwt").write_text(FR + "\n")
    client = Client(URL, token=tmp_path / "me.jwt", permits=[tmp_path / "fr.jwt"])
    assert client.credentials.bearer == "id.token.sig"
    assert client.credentials.permits == (FR,)
    assert "id.token.sig" not in repr(client)
    assert FR not in repr(client)


def test_the_default_request_is_the_one_the_permits_share() -> None:
    assert default_request([FR, DE]) == "DR-1"
    assert default_request([unsigned_permit("A"), unsigned_permit("A")]) == "A"
    assert default_request([unsigned_permit("A"), unsigned_permit("B")]) is None
    assert default_request(["not-a-jwt"]) is None
    with pytest.raises(InvalidQuery) as refused:
        Client(URL, permits=["x"], transport=gateway(graphql_reply({}))).cohort()
    assert refused.value.code == ErrorCode.INVALID_ARGUMENT


def test_leaving_out_the_total_and_asking_several_tables() -> None:
    fake = gateway(graphql_reply(cohort_with_a_denied_node()))
    client = Client(URL, permits=[FR], transport=fake)
    client.cohort(by=[["SEX"], ["JURISDICTION", "AGE_BAND_5"]], total=False, noise="coarse")
    sent = json.loads(fake.requests[0][1])
    assert "b1: breakdown(by: [JURISDICTION, AGE_BAND_5])" in sent["query"]
    assert "\n    count {" not in sent["query"]
    assert sent["variables"]["noise"] == "COARSE"
    assert "ageAt" not in sent["variables"]  # the gateway's default


def test_ages_can_be_taken_at_the_reference_date() -> None:
    fake = gateway(graphql_reply(cohort_with_a_denied_node()))
    client = Client(URL, permits=[FR], transport=fake)
    client.cohort(concepts=["ICD10:E11"], by=["AGE_BAND_10"], age_at="reference_date")
    sent = json.loads(fake.requests[0][1])
    assert sent["variables"]["ageAt"] == "REFERENCE_DATE"
    assert "ageAt: $ageAt" in sent["query"]
    with pytest.raises(InvalidQuery) as refused:
        client.cohort(concepts=["ICD10:E11"], age_at="birthday")
    assert refused.value.code == ErrorCode.INVALID_ARGUMENT


def test_leaving_out_the_countries_own_counts() -> None:
    # The pooled count alone: a securely pooled total is then released (and charged) once.
    fake = gateway(graphql_reply(cohort_with_a_denied_node()))
    client = Client(URL, permits=[FR], transport=fake)
    client.cohort(by=["SEX"])
    client.cohort(by=["SEX"], countries=False)
    both, pooled_only = fake.requests[0][1], fake.requests[1][1]
    assert "\n      count {" in json.loads(both)["query"]
    query = json.loads(pooled_only)["query"]
    assert "\n    count {" in query
    assert "\n      count {" not in query
    assert "byJurisdiction { jurisdiction status" in query


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("TOKEN_MALFORMED", AuthenticationError),
        ("TOKEN_EXPIRED", AuthenticationError),
        ("UNAUTHENTICATED", AuthenticationError),
        ("FORBIDDEN", PermissionDenied),
        ("REQUEST_MISMATCH", PermissionDenied),
        ("GRAPHQL_VALIDATION_FAILED", InvalidQuery),
        ("INVALID_CODE", InvalidQuery),
        ("QUERY_TOO_COMPLEX", InvalidQuery),
        ("QUORUM_NOT_MET", Unavailable),
        ("AUDIT_UNAVAILABLE", Unavailable),
    ],
)
def test_each_refusal_raises_its_kind_with_its_code(code: str, kind: type[Exception]) -> None:
    fake = gateway(graphql_reply(None, [error(code, "no")]))
    with pytest.raises(kind) as raised:
        Client(URL, permits=[FR], transport=fake).cohort(concepts=["ICD10:E11"])
    assert isinstance(raised.value, TesseraClientError)
    assert raised.value.code == ErrorCode(code)
    assert raised.value.message == "no"


def test_rate_limited_says_when_to_retry_and_unknown_codes_are_kept() -> None:
    fake = gateway(graphql_reply(None, [error("RATE_LIMITED", retryAfter=7)], status=429))
    with pytest.raises(RateLimited) as raised:
        Client(URL, transport=fake).execute("{ x }")
    assert (raised.value.retry_after, raised.value.status) == (7, 429)
    newer = gateway(graphql_reply(None, [error("A_CODE_FROM_THE_FUTURE")]))
    with pytest.raises(TesseraClientError) as unknown:
        Client(URL, transport=newer).execute("{ x }")
    assert unknown.value.code == "A_CODE_FROM_THE_FUTURE"
    assert error_class("A_CODE_FROM_THE_FUTURE") is TesseraClientError


def test_partial_data_with_an_error_is_kept_on_the_exception() -> None:
    data = {"a": cohort_with_a_denied_node()["cohort"], "b": None}
    fake = gateway(graphql_reply(data, [error("INVALID_CRITERIA")]))
    with pytest.raises(InvalidQuery) as raised:
        Client(URL, transport=fake).execute("{ a: cohort b: cohort }")
    assert raised.value.data == data


def test_a_body_that_is_not_graphql_is_unavailable() -> None:
    fake = gateway(Reply(502, b"<html>bad gateway</html>"))
    with pytest.raises(Unavailable) as raised:
        Client(URL, transport=fake).execute("{ x }")
    assert raised.value.code is None
    assert raised.value.status == 502


def test_no_gateway_listening_is_unavailable_without_a_code() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(Unavailable) as raised:
            Client(f"http://127.0.0.1:{port}/graphql", timeout_s=5).execute("{ x }")
    assert raised.value.code is None
    assert "127.0.0.1" in raised.value.message


def test_local_mistakes_are_invalid_queries_with_codes() -> None:
    client = Client(URL, permits=[FR], transport=gateway(graphql_reply({})))
    for kwargs, code in [
        ({"concepts": ["E11"]}, ErrorCode.INVALID_CODE),
        ({"concepts": ["XX:E11"]}, ErrorCode.INVALID_CODE),
        ({"by": ["COUNTRY"]}, ErrorCode.UNKNOWN_DIMENSION),
        ({"sex": "other"}, ErrorCode.INVALID_CRITERIA),
        ({"jurisdictions": ["UK"]}, ErrorCode.UNKNOWN_JURISDICTION),
    ]:
        with pytest.raises(InvalidQuery) as raised:
            client.cohort(**kwargs)  # type: ignore[arg-type]
        assert raised.value.code == code, kwargs


async def test_the_async_client_asks_and_fails_the_same_way() -> None:
    fake = gateway(graphql_reply(cohort_with_a_denied_node()))
    async with AsyncClient(URL, token="t.o.k", permits=[FR], transport=fake.asynchronous()) as c:
        answer = await c.cohort(concepts=["ICD10:E11"], by=["JURISDICTION", "AGE_BAND_5"])
    assert len(answer.frame("JURISDICTION,AGE_BAND_5")) == 9
    assert [v for k, v in fake.requests[0][2] if k == "X-Tessera-Permit"] == [FR]
    refusing = gateway(graphql_reply(None, [error("TOKEN_BAD_SIGNATURE")]))
    async with AsyncClient(URL, transport=refusing.asynchronous()) as c:
        with pytest.raises(AuthenticationError) as raised:
            await c.execute("{ x }")
    assert raised.value.code == ErrorCode.TOKEN_BAD_SIGNATURE


async def test_the_async_client_maps_a_refused_connection() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        async with AsyncClient(f"http://127.0.0.1:{port}/graphql", timeout_s=5) as client:
            with pytest.raises(Unavailable) as raised:
                await client.execute("{ x }")
    assert raised.value.code is None


def test_an_index_and_relative_criteria_travel_as_the_published_schema_reads_them() -> None:
    import graphql
    from graphql.execution.values import get_variable_values

    from gateway.graphql.schema import build_schema
    from tessera.client import event, index, relative

    fake = gateway(graphql_reply(cohort_with_a_denied_node()))
    client = Client(URL, token="id.token.sig", permits=[FR, DE], transport=fake)
    admission = event("condition", ["ICD10:U07.1"], visit="inpatient")
    diabetes = event("CONDITION", ["ICD10:E11"], excluded=["ICD10:E11.0-E11.1"])
    client.cohort(
        index=index([admission], occurrence="FIRST", prior_observation_days=365),
        criteria={
            "relative": [
                relative(diabetes, days=(-36525, -1)),
                relative(event("DEATH"), days=(0, 28)),
                relative(event("VISIT", visit="EMERGENCY"), days=(-30, -1), exclude=True),
            ]
        },
        by=["AGE_BAND_20"],
    )
    sent = json.loads(fake.requests[0][1])
    assert sent["variables"]["index"]["events"] == [
        {
            "domain": "CONDITION",
            "codes": [{"vocabulary": "ICD10", "code": "U07.1", "descendants": True}],
            "visit": "INPATIENT",
        }
    ]
    assert sent["variables"]["criteria"]["relative"][0]["event"]["excluded"] == [
        {"vocabulary": "ICD10", "code": "E11.0", "descendants": True, "to": "E11.1"}
    ]
    # The document and its variables are what the gateway's schema accepts.
    schema = build_schema()._schema
    document = graphql.parse(sent["query"])
    assert graphql.validate(schema, document) == []
    (operation,) = document.definitions
    assert isinstance(operation, graphql.OperationDefinitionNode)
    coerced = get_variable_values(schema, operation.variable_definitions or (), sent["variables"])
    assert not isinstance(coerced, list), coerced  # a list holds the coercion's errors


def test_an_unknown_event_domain_or_visit_type_is_an_invalid_query() -> None:
    from tessera.client import event

    with pytest.raises(InvalidQuery, match="unknown event domain"):
        event("PROCEDURE", ["ICD10:E11"])
    with pytest.raises(InvalidQuery, match="unknown visit type"):
        event("CONDITION", ["ICD10:E11"], visit="WARD")


def test_a_survival_input_asks_country_curves_unless_told_pooled_only() -> None:
    death = event("DEATH")
    assert "byCountry" not in survival(death, interval_days=30, max_days=360)
    pooled = survival(death, interval_days=30, max_days=360, group_by="sex", by_country=False)
    assert pooled["byCountry"] is False
    assert pooled["groupBy"] == "SEX"
