"""The GraphQL schema itself: SDL, error codes on every path, tracing, caches."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from graphql import GraphQLError, GraphQLSyntaxError, Source
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from strawberry.extensions import SchemaExtension
from strawberry.types.base import StrawberryObjectDefinition

from gateway.app import create_app
from gateway.graphql.errors import INTERNAL_MESSAGE, coded
from gateway.graphql.schema import build_schema, sdl
from gateway.nodes import MockNodeClient
from gateway.settings import GatewaySettings
from schema.errors import ErrorCode, TesseraError


def test_sdl_has_the_published_shape() -> None:
    text = sdl()
    assert text.endswith("}\n")
    # The cohort field's arguments, one a line (three of them carry descriptions).
    # Nullable: one field's refusal must not null its siblings' answers.
    cohort = text[text.index("  cohort(\n") : text.index("): CohortResult\n")]
    argument = re.compile(r"^    ([a-zA-Z]+: [][A-Za-z!]+)$")
    arguments = [m.group(1) for line in cohort.splitlines() if (m := argument.match(line))]
    assert arguments == [
        "request: String!",
        "jurisdictions: [Jurisdiction!]",
        "criteria: CriteriaInput!",
        "index: IndexEventInput",
        "referenceDate: Date",
        "ageAt: AgeAt",
        "deadlineMs: Int",
        "minNodes: Int",
        "minShare: Float",
        "noise: NoiseLevel",
        "variable: VariableInput",
        "outcome: OutcomeInput",
        "survival: SurvivalInput",
    ]
    for line in [
        "jurisdictions: [JurisdictionInfo!]!",
        "breakdown(by: [Dimension!]!): Breakdown!",
        "descendants: Boolean! = true",
        "anyOf: [CriteriaInput!]",
        "latencyMs: Float",
        "traceId: String",
        "summary: Summary",
        "ciLow: Estimate!",
        "survival: SurvivalResult",
        "logRank: [LogRank!]!",
    ]:
        assert line in text, line
    assert "subscription" not in text.lower()


def test_a_tessera_error_keeps_its_code_message_and_details() -> None:
    original = TesseraError("nope", code=ErrorCode.UNKNOWN_JURISDICTION, members=["FR"])
    error = coded(GraphQLError("ignored", path=["cohort"], original_error=original))
    assert error.message == "nope"
    assert error.extensions == {"code": "UNKNOWN_JURISDICTION", "members": ["FR"]}
    assert error.path == ["cohort"]
    assert error.original_error is None


def test_an_unexpected_exception_is_masked() -> None:
    secret = RuntimeError("value 7 for person 123")
    error = coded(GraphQLError(str(secret), path=["cohort"], original_error=secret))
    assert (error.message, error.extensions) == (INTERNAL_MESSAGE, {"code": "INTERNAL"})


def test_coding_is_idempotent() -> None:
    syntax = GraphQLSyntaxError(Source("{"), 1, "Expected Name")
    for error in (syntax, GraphQLError("Unknown field"), GraphQLError("x", path=["a"])):
        once = coded(error)
        assert coded(once).extensions == once.extensions
    assert coded(syntax).extensions == {"code": "GRAPHQL_PARSE_FAILED"}


async def test_one_trace_per_operation_with_an_event_per_step(
    settings: GatewaySettings, nodes: MockNodeClient, token: str
) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    app = create_app(settings, node_client=nodes, tracer_provider=provider)
    query = 'query Q { cohort(request: "DR-2026-0042", criteria: {}) { traceId queryId } }'
    async with TestClient(TestServer(app)) as client:
        response = await client.post(
            "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
        )
        body = await response.json()
        await client.post("/graphql", json={"query": "{ nope }"})
    finished = spans.get_finished_spans()
    operations = [s for s in finished if s.name == "graphql.operation"]
    assert len(operations) == 2
    first, second = operations
    assert body["data"]["cohort"]["traceId"] == f"{first.context.trace_id:032x}"
    assert first.parent is None
    # The operation name is the researcher's text: not recorded.
    assert "graphql.operation.name" not in (first.attributes or {})
    children = {s.name: s for s in finished if s.parent == first.context}
    cohort = children["gateway.cohort"]
    assert cohort.attributes is not None
    assert cohort.attributes["tessera.query_id"] == body["data"]["cohort"]["queryId"]
    assert cohort.attributes["tessera.approval_id"] == "DR-2026-0042"
    assert cohort.attributes["tessera.decision"] == "ANSWERED"
    # The steps are events of the question's span, each with its duration; the only spans
    # below it are the node calls.
    events = {e.name: dict(e.attributes or {}) for e in cohort.events}
    assert [e.name for e in cohort.events] == [
        "gateway.authenticate",
        "gateway.authorize",
        "gateway.plan",
        "gateway.policy",
        "gateway.limits",
        "gateway.admission",
        "gateway.fan_out",
        "gateway.combine",
        "audit.write",
    ]
    assert all(isinstance(e["tessera.step.elapsed_us"], int) for e in events.values())
    assert events["gateway.policy"]["tessera.jurisdictions.denied"] == ()
    assert events["gateway.combine"]["tessera.cells_suppressed"] == 0
    assert events["audit.write"]["tessera.audit.seq"] == 1
    below = [s for s in finished if s.parent == cohort.context]
    assert [s.name for s in below] == ["gateway.node_call"] * 3
    # One span per operation, one per question, one per node asked: nothing else.
    assert len([s for s in finished if s.context.trace_id == first.context.trace_id]) == 5
    assert second.attributes is not None
    assert second.attributes["tessera.error_codes"] == ("GRAPHQL_VALIDATION_FAILED",)


async def test_a_failed_step_is_an_event_with_its_code_on_an_error_span(
    settings: GatewaySettings, nodes: MockNodeClient, token: str
) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    app = create_app(settings, node_client=nodes, tracer_provider=provider)
    query = (
        '{ cohort(request: "DR-2026-0042", criteria: { age: { min: 70, max: 40 } }) { queryId } }'
    )
    async with TestClient(TestServer(app)) as client:
        response = await client.post(
            "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
        )
        body = await response.json()
    assert body["errors"], body
    (cohort,) = [s for s in spans.get_finished_spans() if s.name == "gateway.cohort"]
    assert cohort.status.status_code is StatusCode.ERROR
    assert cohort.attributes is not None
    assert cohort.attributes["tessera.decision"] == "REFUSED"
    code = cohort.attributes["tessera.error_code"]
    assert code == body["errors"][0]["extensions"]["code"] == "INVALID_CRITERIA"
    failed = [e for e in cohort.events if "tessera.error_code" in (e.attributes or {})]
    assert [(e.name, (e.attributes or {})["tessera.error_code"]) for e in failed] == [
        ("gateway.plan", code)
    ]
    # Written (and recorded) after the failed step; no exception event: its message could
    # carry the researcher's text.
    assert [e.name for e in cohort.events][-1] == "audit.write"
    assert all(e.name != "exception" for e in cohort.events)


async def test_a_trace_id_is_returned_when_nothing_is_exported(graphql: Any) -> None:
    body = await graphql('{ cohort(request: "DR-2026-0042", criteria: {}) { traceId } }')
    assert re.fullmatch(r"[0-9a-f]{32}", body["data"]["cohort"]["traceId"])


async def test_the_callers_traceparent_is_continued(client: TestClient, token: str) -> None:
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await client.post(
        "/graphql",
        json={"query": '{ cohort(request: "DR-2026-0042", criteria: {}) { traceId } }'},
        headers={
            "Authorization": f"Bearer {token}",
            "traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01",
        },
    )
    assert (await response.json())["data"]["cohort"]["traceId"] == caller_trace


def test_no_extension_wraps_resolvers() -> None:
    # A per-resolver hook would make every resolver async (strawberry's OpenTelemetry
    # extension does); only `cohort`, which awaits the nodes, is.
    schema = build_schema()
    for factory in schema.extensions:
        extension = factory()
        assert type(extension).resolve is SchemaExtension.resolve, type(extension).__name__
    result = schema.get_type_by_name("CohortResult")
    assert isinstance(result, StrawberryObjectDefinition)
    fields = {f.python_name: f for f in schema.get_fields(result)}
    assert not fields["breakdown"].is_async


async def test_parse_and_validation_are_cached(
    graphql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import graphql as graphql_core
    import strawberry.schema.schema as strawberry_schema

    calls = {"parse": 0, "validate": 0}
    real_parse = graphql_core.language.parser.Parser.parse_document
    real_validate = strawberry_schema.validate

    def parse(self: Any) -> Any:
        calls["parse"] += 1
        return real_parse(self)

    def validate(*args: Any, **kwargs: Any) -> Any:
        calls["validate"] += 1
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(graphql_core.language.parser.Parser, "parse_document", parse)
    monkeypatch.setattr(strawberry_schema, "validate", validate)
    # A query text no other test sends: the caches are shared by the whole process.
    query = f"# {uuid.uuid4()}\n" + (
        '{ cohort(request: "DR-2026-0042", criteria: {sex: MALE}) { count { value } } }'
    )
    for _ in range(3):
        body = await graphql(query)
        assert body["data"]["cohort"]["count"]["value"] == 500
    # Parsed once to count the request's questions before any runs, once by the schema.
    assert calls == {"parse": 2, "validate": 1}


async def test_deeply_nested_json_is_a_bad_request(client: TestClient) -> None:
    nested = '{"anyOf": [' * 5000 + "{}" + "]}" * 5000
    data = '{"query": "{ jurisdictions { code } }", "variables": {"c": ' + nested + "}}"
    response = await client.post(
        "/graphql", data=data, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
