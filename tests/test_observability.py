"""Traces and audit trails of whole queries, gateway and connectors in one process (real apps,
real signed HTTP on loopback, SQLite trails, in-memory span export)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanKind

from connectors.backends.fake import FakeBackend
from oversight.audit.sqlite import SqliteAuditStore
from schema.approval import Role
from schema.audit.chain import verify_chain
from schema.audit.entry import AuditRecord, Decision
from schema.codes import Jurisdiction
from tessera.local import policies_with_rate_limits
from tests.observability_kit import InProcessFederation, in_process_federation

FR, DK = Jurisdiction.FR, Jurisdiction.DK
# Rows `(grouping_id, sex, count)` of the total and the by-sex table. The minimum count is
# raised to 1000 for both countries (below), so that every withheld count is a distinctive
# three-digit number a scan can look for: FR MALE 937, DK FEMALE 863 and DK MALE 719 (their
# noise, of sd 5, cannot lift them to 1000).
ROWS = {
    FR: [(1, None, 48211), (0, "FEMALE", 47274), (0, "MALE", 937)],
    DK: [(1, None, 1582), (0, "FEMALE", 863), (0, "MALE", 719)],
}
SUPPRESSED = {"937", "863", "719"}

QUERY = """
query {
  cohort(request: "DR-2026-0042", criteria: {}) {
    queryId traceId
    count { value status reasons { rule } }
    byJurisdiction { jurisdiction status count { value status } }
    breakdown(by: [SEX]) { cells { dimensions { value } count { value status reasons { rule } } } }
    perNode: breakdown(by: [JURISDICTION, SEX]) {
      cells { dimensions { value } count { value status reasons { rule } } }
    }
  }
}
"""


@pytest.fixture
async def federation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[InProcessFederation]:
    # Thresholds of 1000 make every suppressed count a distinctive three-digit number.
    # Busy runs ask far more than a researcher may per minute.
    policies = policies_with_rate_limits(
        tmp_path / "policies", per_minute=100_000, per_day=1_000_000
    )
    for code, minimum in (("fr", 11), ("dk", 5)):
        path = policies / "jurisdictions" / f"{code}.toml"
        old = f"[disclosure.min_count]\nvalue = {minimum}\n"
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, "[disclosure.min_count]\nvalue = 1000\n"))
    backends = {j: FakeBackend(rows) for j, rows in ROWS.items()}
    async with in_process_federation(tmp_path, backends, policies=policies) as fed:
        yield fed


async def chain_rows(path: Path, chain: str) -> list[Any]:
    store = SqliteAuditStore(path)
    try:
        rows: list[Any] = []
        while page := await store.entries(chain, after=len(rows)):
            rows += page
        return rows
    finally:
        await store.close()


def by_name(spans: Iterable[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_one_trace_spans_the_gateway_and_every_node(federation: InProcessFederation) -> None:
    body = await federation.ask(QUERY, federation.token())
    assert "errors" not in body, body
    trace_id = body["data"]["cohort"]["traceId"]
    spans = federation.spans.get_finished_spans()
    assert {f"{s.context.trace_id:032x}" for s in spans} == {trace_id}
    services = {str(s.resource.attributes["service.name"]) for s in spans}
    assert services == {"tessera-gateway", "tessera-connector-fr", "tessera-connector-dk"}

    (operation,) = by_name(spans, "graphql.operation")
    (cohort,) = by_name(spans, "gateway.cohort")
    assert operation.parent is None
    assert cohort.parent == operation.context
    assert "gateway.fan_out" in [e.name for e in cohort.events]
    calls = {s.attributes["tessera.jurisdiction"]: s for s in by_name(spans, "gateway.node_call")}
    nodes = {s.attributes["tessera.jurisdiction"]: s for s in by_name(spans, "connector.query")}
    assert set(calls) == set(nodes) == {"FR", "DK"}
    for j in ("FR", "DK"):
        call, node = calls[j], nodes[j]
        assert call.kind is SpanKind.CLIENT
        assert call.parent == cohort.context
        assert node.kind is SpanKind.SERVER
        assert node.parent is not None
        assert node.parent.span_id == call.context.span_id
        # The node's steps are events of its one span.
        assert [s for s in spans if s.parent == node.context] == []
        steps = [e.name for e in node.events]
        assert steps == [
            "connector.verify",
            "connector.parse",
            "connector.approval",
            "connector.policy",
            "connector.compile",
            "connector.queue",
            "connector.codes",
            "connector.population",
            "connector.ledger",
            "connector.sql",
            "connector.protect",
            "audit.write",
        ]
        assert node.attributes is not None
        assert node.attributes["tessera.query_id"] == body["data"]["cohort"]["queryId"]
        assert node.attributes["tessera.approval_id"] == "DR-2026-0042"
        assert node.attributes["tessera.purpose"] == "scientific_research"
        assert node.attributes["tessera.optout_register_version"] == "fake-optout-1"
        assert "BELOW_MINIMUM" in node.attributes["tessera.rules_fired"]
        assert call.attributes is not None
        assert call.attributes["tessera.node.status"] == "OK"
    # FR: MALE and UNKNOWN (nobody) below 1000; DK: every cell of the table. The totals are
    # released: every number is noisy, so none of them gives a withheld one away.
    assert nodes["FR"].attributes["tessera.cells_suppressed"] == 2  # type: ignore[index]
    assert nodes["DK"].attributes["tessera.cells_suppressed"] == 3  # type: ignore[index]
    assert cohort.attributes is not None
    assert cohort.attributes["tessera.decision"] == "ANSWERED"
    # The five LOW cells per country, and the three pooled cells with a LOW part.
    assert cohort.attributes["tessera.cells_suppressed"] == 8
    assert set(cohort.attributes["tessera.rules_fired"]) == {  # type: ignore[arg-type]
        "BELOW_MINIMUM",
        "INCOMPLETE_POOL",
        "NOISE",
    }


async def test_gateway_and_node_entries_agree(federation: InProcessFederation) -> None:
    body = await federation.ask(QUERY, federation.token())
    query_id = body["data"]["cohort"]["queryId"]
    (gateway_row,) = await chain_rows(federation.gateway_audit_db(), "gateway:tessera-gateway")
    gateway = gateway_row.record()
    assert gateway.query_id == query_id
    assert gateway.trace_id == body["data"]["cohort"]["traceId"]
    for step in gateway.nodes:
        code = step.jurisdiction.value.lower()
        (node_row,) = await chain_rows(
            federation.node_audit_db(step.jurisdiction), f"node:tessera-node-{code}"
        )
        node = node_row.record()
        assert (node.query_id, node.trace_id, node.query_hash) == (
            query_id,
            gateway.trace_id,
            gateway.query_hash,
        )
        # The node recorded the answer the gateway received.
        assert node.result_hash == step.response_hash
        assert (node.principal, node.purpose, node.caller) == (
            gateway.principal,
            gateway.purpose,
            "gateway-1",
        )


# -- no suppressed value anywhere -------------------------------------------------------------

# aiohttp's access log carries method, path, status, size and user agent, never content; its
# byte sizes are three-digit numbers too, so it is left out rather than matched by chance.
ACCESS_LOGGER = "aiohttp.access"


def tokens(text: str) -> set[str]:
    return set(re.findall(r"\w+", text))


def leaves(data: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(data, dict):
        for k, v in data.items():
            yield from leaves(v, k)
    elif isinstance(data, list):
        for v in data:
            yield from leaves(v, key)
    else:
        yield key, data


def found_in_audit(body: str) -> set[str]:
    """Suppressed values among an entry's fields; timings (`*_us`) are measured, not counted,
    and left out for the same reason as the access log."""
    return {
        value
        for key, leaf in leaves(json.loads(body))
        if not key.endswith("_us")
        for value in SUPPRESSED & tokens(str(leaf))
    }


def found_in_span(span: ReadableSpan) -> set[str]:
    """Suppressed values in a span and its events; a step event's timing (`*_us`) is left out
    as the audit entry's is."""
    texts = [span.name, str(span.status.description or "")]
    texts += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
    for event in span.events:
        texts.append(event.name)
        texts += [f"{k}={v}" for k, v in (event.attributes or {}).items() if not k.endswith("_us")]
    texts += [str(v) for v in span.resource.attributes.values()]
    return {value for text in texts for value in SUPPRESSED & tokens(text)}


def test_the_scans_find_a_value_where_there_is_one() -> None:
    assert found_in_audit('{"record": {"x": [1, "a 937 b"], "elapsed_us": 863}}') == {"937"}
    assert found_in_span(
        ReadableSpan(
            name="gateway.cohort",
            events=[Event("gateway.combine", {"x": "a 937 b", "tessera.step.elapsed_us": 863})],
        )
    ) == {"937"}
    assert tokens("q-0937 7190 f937a 937") & SUPPRESSED == {"937"}


async def test_no_suppressed_value_in_any_span_log_line_or_audit_entry(
    federation: InProcessFederation, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        answers = [await federation.ask(QUERY, federation.token()) for _ in range(3)]
        compliance = federation.token(Role.COMPLIANCE)
        query_id = answers[0]["data"]["cohort"]["queryId"]
        record = await federation.ask(
            "query($q: ID!) { auditEntry(queryId: $q) { nodes { cellsSuppressed } } }",
            compliance,
            q=query_id,
        )
    # The run did suppress cells, and released others.
    answer_text = json.dumps(answers)
    assert answer_text.count('"SUPPRESSED"') + answer_text.count('"LOW"') >= 3 * 5
    released = set(re.findall(r'"value": (\d+)', answer_text))
    assert released  # the run released numbers too, so the scans had something to miss
    assert SUPPRESSED.isdisjoint(tokens(answer_text))
    assert record["data"]["auditEntry"]["nodes"]

    spans = federation.spans.get_finished_spans()
    # What the scan reads: each answer's spans (operation, question, a call and an answer per
    # node, two nodes) and the audit look-up's operation, and their events (the steps of each).
    assert len(spans) == 3 * 6 + 1
    assert sum(len(s.events) for s in spans) > 40
    assert {v for s in spans for v in found_in_span(s)} == set()

    lines = [r for r in caplog.records if r.name != ACCESS_LOGGER]
    assert any(r.name.startswith(("gateway", "connectors", "schema")) for r in lines)
    leaked = {
        value
        for r in lines
        for value in SUPPRESSED & tokens(f"{r.getMessage()} {r.exc_text or ''}")
    }
    assert leaked == set()

    entries = await chain_rows(federation.gateway_audit_db(), "gateway:tessera-gateway")
    for j in (FR, DK):
        entries += await chain_rows(
            federation.node_audit_db(j), f"node:tessera-node-{j.value.lower()}"
        )
    assert len(entries) == 3 * 3
    for row in entries:
        AuditRecord.model_validate_json(json.dumps(json.loads(row.body)["record"]), strict=False)
    assert {v for row in entries for v in found_in_audit(row.body)} == set()


# -- exactly one entry per answer ---------------------------------------------------------------


@pytest.mark.parametrize(
    "queries", [200, pytest.param(1000, marks=pytest.mark.slow)], ids=["200", "1000"]
)
async def test_every_answer_of_a_busy_run_has_exactly_one_entry(
    federation: InProcessFederation, queries: int
) -> None:
    token = federation.token()
    concurrency = 16
    answered: list[str] = []

    async def client(n: int) -> None:
        for _ in range(n):
            body = await federation.ask(QUERY, token)
            assert "errors" not in body, body
            answered.append(body["data"]["cohort"]["queryId"])

    await asyncio.gather(*(client(queries // concurrency) for _ in range(concurrency)))
    assert len(answered) == len(set(answered)) == queries // concurrency * concurrency

    chains = {"gateway:tessera-gateway": federation.gateway_audit_db()}
    chains |= {
        f"node:tessera-node-{j.value.lower()}": federation.node_audit_db(j) for j in (FR, DK)
    }
    for chain, path in chains.items():
        rows = await chain_rows(path, chain)
        assert verify_chain(chain, rows).ok
        ids = [row.query_id for row in rows]
        assert sorted(ids) == sorted(answered), chain  # none lost, none duplicated
        assert {row.decision for row in rows} == {Decision.ANSWERED.value}
