"""Traces and audit trails of real gateway and connector processes.

Both kinds of process export their spans over OTLP/HTTP (the standard `OTEL_*` variables) to a
receiver run by the test (`otlp.py`), which decodes the protobuf requests; each keeps
its audit trail in its own SQLite file, which `tessera audit verify` then checks, tampered
with or not.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from schema import telemetry as otel
from schema.audit.entry import AuditRecord, Decision, StoredEntry
from schema.codes import Jurisdiction
from tessera.local import LocalFederation, policies_with_rate_limits
from tessera.processes import free_port
from tests.integration.federation_kit import post
from tests.integration.otlp import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JURISDICTIONS = (Jurisdiction.FR, Jurisdiction.DK)
# Soft-tissue sarcoma by country and sex: rare, so most cells are suppressed.
RARE = """
query {
  cohort(request: "DR-2026-0042", referenceDate: "2026-01-01",
         criteria: { conditions: [{ vocabulary: ICD10, code: "C49" }] }) {
    queryId traceId
    count { value status }
    byJurisdiction { jurisdiction status count { value status } }
    breakdown(by: [JURISDICTION, SEX]) { cells { count { value status } } }
  }
}
"""
COMMON = """
query {
  cohort(request: "DR-2026-0042", referenceDate: "2026-01-01",
         criteria: { sex: FEMALE, conditions: [{ vocabulary: ICD10, code: "E11" }] }) {
    queryId traceId count { value }
  }
}
"""
# Every attribute a span may carry: Tessera's own (schema.telemetry) and OpenTelemetry's.
TESSERA_KEYS = {
    v
    for k, v in vars(otel).items()
    if k.isupper() and isinstance(v, str) and v.startswith("tessera.")
}
INTEGER_KEYS = {otel.CELLS_SUPPRESSED, otel.AUDIT_SEQ, otel.STEP_ELAPSED_US}


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def observed(
    tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver
) -> Iterator[LocalFederation]:
    directory = tmp_path_factory.mktemp("observed")
    federation = LocalFederation(
        directory=directory,
        # A busy run asks far more than a researcher may per minute.
        policies=policies_with_rate_limits(
            directory / "policies", per_minute=100_000, per_day=1_000_000
        ),
        jurisdictions=JURISDICTIONS,
        persons=5_000,
        seed=11,
        gateway_port=free_port(),
        node_ports=[free_port() for _ in JURISDICTIONS],
        console=False,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "",
        },
    )
    federation.prepare()
    try:
        asyncio.run(federation.start())
        yield federation
    finally:
        federation.stop()


def ask(federation: LocalFederation, query: str) -> dict[str, Any]:
    token = federation.researcher()
    status, body = post(federation.gateway_url, {"query": query}, token)
    assert status == 200
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["cohort"]
    return result


def test_one_trace_spans_the_gateway_and_the_connector_processes(
    observed: LocalFederation, receiver: OtlpReceiver
) -> None:
    answer = ask(observed, RARE)
    spans = receiver.trace(answer["traceId"], services=3)
    by_id = {s.span_id: s for s in spans}
    assert {s.service for s in spans} == {
        "tessera-gateway",
        "tessera-connector-fr",
        "tessera-connector-dk",
    }

    def children(parent: ReceivedSpan) -> list[str]:
        return [s.name for s in spans if s.parent_id == parent.span_id]

    (operation,) = [s for s in spans if s.name == "graphql.operation"]
    assert operation.parent_id == ""
    (cohort,) = [s for s in spans if s.name == "gateway.cohort"]
    assert cohort.parent_id == operation.span_id
    # The question's steps are events of its span; the node calls are its only children.
    assert [name for name, _ in cohort.events] == [
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
    assert sorted(children(cohort)) == ["gateway.node_call"] * len(JURISDICTIONS)
    nodes = [s for s in spans if s.name == "connector.query"]
    assert {s.service for s in nodes} == {"tessera-connector-fr", "tessera-connector-dk"}
    for node in nodes:
        call = by_id[node.parent_id]  # the gateway's client span is the node's parent
        assert (call.name, call.service) == ("gateway.node_call", "tessera-gateway")
        assert by_id[call.parent_id].name == "gateway.cohort"
        assert children(node) == []
        assert [name for name, _ in node.events] == [
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
        jurisdiction = node.service.rsplit("-", 1)[1].upper()
        assert node.attributes[otel.JURISDICTION] == jurisdiction
        assert node.attributes[otel.QUERY_ID] == answer["queryId"]
        # Each node under its own HDAB's data request, part of the application asked under.
        assert node.attributes[otel.APPROVAL_ID] == f"DR-2026-0042-{jurisdiction}"
        assert node.attributes[otel.PURPOSE] == "scientific_research"
        assert node.attributes[otel.OPTOUT_REGISTER_VERSION]
        assert len(node.attributes[otel.SQL_FINGERPRINT]) == 16
        assert node.attributes[otel.DECISION] == "ANSWERED"
        assert call.attributes[otel.NODE_STATUS] == "OK"
        assert call.attributes[otel.CELLS_SUPPRESSED] == node.attributes[otel.CELLS_SUPPRESSED]
    assert cohort.attributes[otel.CELLS_SUPPRESSED] > 0
    assert "BELOW_MINIMUM" in cohort.attributes[otel.RULES_FIRED]

    # What spans may carry at all: named keys, and numbers only where they count cells or
    # entries, never people.
    # The same for events, whose only other numbers are timings.
    for span in spans:
        recorded = [(span.name, span.attributes), *span.events]
        for name, attributes in recorded:
            for key, value in attributes.items():
                assert key in TESSERA_KEYS, (name, key)
                if isinstance(value, int) and not isinstance(value, bool):
                    assert key in INTEGER_KEYS, (name, key)


def test_the_answer_names_the_trace_in_every_audit_entry(observed: LocalFederation) -> None:
    answer = ask(observed, COMMON)
    paths = {"gateway:tessera-gateway": observed.gateway_audit_db}
    paths |= {f"node:{observed.node_id(j)}": observed.audit_db(j) for j in JURISDICTIONS}
    for chain, path in paths.items():
        (row,) = [r for r in read_rows(path) if r.query_id == answer["queryId"]]
        assert row.chain == chain
        record = row.record()
        assert record.trace_id == answer["traceId"]
        assert record.decision is Decision.ANSWERED
        assert record.principal == "researcher@demo.tessera.eu"


def read_rows(path: Path) -> list[StoredEntry]:
    # Closed at once: an sqlite3 connection is otherwise only closed by the garbage collector.
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        rows = connection.execute(
            "SELECT chain, seq, hash, prev, time, query_id, principal, approval, decision, "
            "jurisdictions, body FROM tessera_audit_entries ORDER BY seq"
        ).fetchall()
    return [StoredEntry(*row) for row in rows]


@pytest.mark.parametrize(
    "queries", [200, pytest.param(1000, marks=pytest.mark.slow)], ids=["200", "1000"]
)
def test_every_answer_has_exactly_one_entry_in_every_trail(
    observed: LocalFederation, queries: int
) -> None:
    paths = {"gateway": observed.gateway_audit_db}
    paths |= {j.value: observed.audit_db(j) for j in JURISDICTIONS}
    before = {name: len(read_rows(path)) for name, path in paths.items()}
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: ask(observed, COMMON)["queryId"], range(queries)))
    assert len(set(answers)) == queries
    for name, path in paths.items():
        rows = read_rows(path)[before[name] :]
        ids = [row.query_id for row in rows]
        assert sorted(ids) == sorted(answers), name  # none lost, none duplicated
        assert all(isinstance(row.record(), AuditRecord) for row in rows)


def verify(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tessera", "audit", "verify", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def tampered_copy(source: Path, target: Path, *statements: str) -> Path:
    """A consistent copy of a live trail, edited as someone with the file would: triggers
    dropped, rows changed."""
    with closing(sqlite3.connect(source)) as live, closing(sqlite3.connect(target)) as copy:
        live.backup(copy)
        for trigger in ("no_update", "no_delete"):
            copy.execute(f"DROP TRIGGER tessera_audit_entries_{trigger}")
        for statement in statements:
            copy.execute(statement)
        copy.commit()
    return target


def test_tessera_audit_verify_detects_tampering(observed: LocalFederation, tmp_path: Path) -> None:
    for _ in range(12):
        ask(observed, COMMON)
    # Stopping signs every chain's head, so that truncation is detectable too.
    observed.stop()
    keys = observed.keys_dir
    trails = {
        "gateway": (observed.gateway_audit_db, observed.gateway_key.public_key),
        "FR": (observed.audit_db(Jurisdiction.FR), keys / "audit-fr.pub.pem"),
    }
    for name, (path, key) in trails.items():
        intact = verify("--db", path, "--key", key)
        assert intact.returncode == 0, intact.stdout + intact.stderr
        assert ": OK: " in intact.stdout
        assert "signatures verified" in intact.stdout
        wrong_key = verify("--db", path, "--key", observed.hdab_key(Jurisdiction.FR).public_key)
        assert wrong_key.returncode == 1

        entries = len(read_rows(path))
        cases: dict[str, tuple[str, ...]] = {
            "altered": (
                "UPDATE tessera_audit_entries SET body = replace(body, 'scientific_research', "
                "'commercial') WHERE seq = 5",
                "BROKEN at entry 5: the hash does not match",
            ),
            "deleted": ("DELETE FROM tessera_audit_entries WHERE seq = 7", "BROKEN at entry 7"),
            "reordered": (
                # Entries 3 and 4 swap places.
                "UPDATE tessera_audit_entries SET seq = -seq WHERE seq IN (3, 4)",
                "UPDATE tessera_audit_entries SET seq = 7 + seq WHERE seq IN (-3, -4)",
                "BROKEN at entry 3",
            ),
            "truncated": (
                f"DELETE FROM tessera_audit_entries WHERE seq = {entries}",  # noqa: S608
                f"signed at entry {entries} but the chain ends at entry {entries - 1}",
            ),
        }
        for case, (*statements, message) in cases.items():
            copy = tampered_copy(path, tmp_path / f"{name}-{case}.sqlite3", *statements)
            result = verify("--db", copy, "--key", key)
            assert result.returncode == 1, (name, case, result.stdout)
            assert message in result.stdout, (name, case, result.stdout)
    # The original trails are untouched.
    shutil.copy(observed.gateway_audit_db, tmp_path / "again.sqlite3")
    assert verify("--db", tmp_path / "again.sqlite3").returncode == 0
