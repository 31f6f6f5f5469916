"""The gateway on two worker processes behind one port (TESSERA_GATEWAY_PROCESSES=2), real
processes on loopback, through the public endpoint: connections pinned to each worker (the
worker that accepted a connection says who it is in /readyz) show that the rate limits and an
applicant's privacy budget hold across workers, that every worker's audit chain verifies
with the others', tampering with one breaks that one, that a worker killed mid-run is
started again without losing what it had audited, that a scrape of /metrics shows every
worker's series, and that SIGTERM stops every worker, each
signing its chain's head."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from schema.codes import Jurisdiction
from tessera.local import LocalFederation, policies_with_rate_limits
from tests.integration.federation_kit import start_federation

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FR = Jurisdiction.FR
WORKERS = 2
RATE_LIMIT = 5  # per researcher per minute
BUDGET_RHO = 0.05
APPLICATION = "DR-2026-0042"
DIABETES_BY_SEX = """{ cohort(request: "%s", referenceDate: "2026-01-01",
    criteria: { conditions: [{ vocabulary: ICD10, code: "E11" }] }) {
  queryId count { value status }
  byJurisdiction { jurisdiction status privacy { questionRho spentRho capRho } }
  breakdown(by: [JURISDICTION, SEX]) { cells { count { value status } } }
} }"""
DIABETES_BY_AGE = DIABETES_BY_SEX.replace("[JURISDICTION, SEX]", "[JURISDICTION, AGE_BAND_10]")
HYPERTENSION = """{ cohort(request: "%s",
  criteria: { conditions: [{ vocabulary: ICD10, code: "I10" }] }) { queryId count { status } } }"""
AUDIT_ENTRY = """query($id: ID!) { auditEntry(queryId: $id) { chain seq decision } }"""
AUDIT_CHAINS = "{ auditChains { chain worker } }"


class Pinned:
    """A keep-alive connection to the gateway's port, and the worker that accepted it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self.connection.request("GET", "/readyz")
        response = self.connection.getresponse()
        body = json.loads(response.read())
        assert response.status == 200, body
        self.worker: int = body["worker"]

    def post(
        self, payload: dict[str, Any], headers: list[tuple[str, str]]
    ) -> tuple[int, dict[str, str], Any]:
        body = json.dumps(payload).encode()
        self.connection.putrequest("POST", "/graphql")
        for name, value in [("Content-Type", "application/json"), *headers]:
            self.connection.putheader(name, value)
        self.connection.putheader("Content-Length", str(len(body)))
        self.connection.endheaders(body)
        response = self.connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())

    def close(self) -> None:
        self.connection.close()


def pin_every_worker(url: str, *, within_s: float = 30.0) -> dict[int, Pinned]:
    """One connection accepted by each worker: the kernel spreads new connections over the
    workers' sockets by a hash of their addresses, so a few tries find them all (a worker
    started again listens once it is set up)."""
    pinned: dict[int, Pinned] = {}
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            connection = Pinned(url)
        except ConnectionResetError:
            continue  # it waited in the queue of a worker that was killed
        if connection.worker in pinned:
            connection.close()
            time.sleep(0.01)
        else:
            pinned[connection.worker] = connection
        if len(pinned) == WORKERS:
            return pinned
    raise AssertionError(f"only workers {sorted(pinned)} accepted connections in {within_s} s")


def tight_budget(directory: Path) -> Path:
    """The shipped policies with generous rates and a budget of BUDGET_RHO per person."""
    policies = policies_with_rate_limits(directory, per_minute=100_000, per_day=1_000_000)
    baseline = policies / "eu.toml"
    old = "value = { applicant = 0.5, organisation = 0.5 }"
    text = baseline.read_text()
    assert old in text
    new = f"value = {{ applicant = {BUDGET_RHO}, organisation = {BUDGET_RHO} }}"
    baseline.write_text(text.replace(old, new))
    assert tomllib.loads(baseline.read_text())["disclosure"]["budget"]["value"]["applicant"] == (
        BUDGET_RHO
    )
    return policies


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    directory = tmp_path_factory.mktemp("workers")
    fed = start_federation(
        directory / "federation",
        (FR,),
        persons=5_000,
        policies=tight_budget(directory / "policies"),
        gateway_env={
            "TESSERA_GATEWAY_PROCESSES": str(WORKERS),
            "TESSERA_GATEWAY_RATE_PER_RESEARCHER_PER_MINUTE": str(RATE_LIMIT),
        },
    )
    yield fed
    fed.stop()


def researcher(federation: LocalFederation, name: str) -> list[tuple[str, str]]:
    """The headers of a researcher of an organisation of their own: their own rate buckets
    and their own privacy budget."""
    subject = f"{name}@workers.example.eu"
    permits = federation.permits(applicant=f"{name} University", subject=subject)
    return federation.credentials(permits, subject=subject).headers()


def compliance(federation: LocalFederation) -> list[tuple[str, str]]:
    token = federation.compliance_token_file.read_text().strip()
    return [("Authorization", f"Bearer {token}")]


def answered(reply: tuple[int, dict[str, str], Any]) -> dict[str, Any]:
    status, _, body = reply
    assert status == 200, body
    assert "errors" not in body, body
    cohort: dict[str, Any] = body["data"]["cohort"]
    return cohort


def audit_verify(federation: LocalFederation, db: Path | None = None) -> tuple[int, str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tessera",
            "audit",
            "verify",
            "--db",
            str(db or federation.gateway_audit_db),
            "--key",
            str(federation.gateway_key.public_key),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def worker_pids(federation: LocalFederation) -> set[int]:
    process = federation.service("gateway").process
    assert process is not None
    parent = process.pid
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return {int(pid) for pid in children}


def test_two_workers_serve_one_port(federation: LocalFederation) -> None:
    pinned = pin_every_worker(federation.gateway_url)
    try:
        assert sorted(pinned) == list(range(WORKERS))
        assert len(worker_pids(federation)) == WORKERS
    finally:
        for connection in pinned.values():
            connection.close()


def test_a_scrape_of_one_worker_shows_every_workers_metrics(federation: LocalFederation) -> None:
    pinned = pin_every_worker(federation.gateway_url)
    headers = researcher(federation, "metrics")
    try:
        for worker in sorted(pinned):
            answered(pinned[worker].post({"query": HYPERTENSION % APPLICATION}, headers))
        time.sleep(1.5)  # each worker writes its series every second
        for worker in sorted(pinned):
            pinned[worker].connection.request("GET", "/metrics")
            response = pinned[worker].connection.getresponse()
            text = response.read().decode()
            assert response.status == 200
            requests = [
                line
                for line in text.splitlines()
                if line.startswith("tessera_gateway_node_requests_total{")
            ]
            for number in range(WORKERS):
                assert any(f'worker="{number}"' in line for line in requests), text
    finally:
        for connection in pinned.values():
            connection.close()


def test_the_rate_limit_holds_across_workers(federation: LocalFederation) -> None:
    pinned = pin_every_worker(federation.gateway_url)
    headers = researcher(federation, "rates")
    payload = {"query": HYPERTENSION % APPLICATION}
    try:
        # Spread over both workers: each alone has answered fewer than the limit.
        for i in range(RATE_LIMIT):
            assert answered(pinned[i % WORKERS].post(payload, headers))["count"]["status"]
        for worker in pinned:
            status, reply_headers, body = pinned[worker].post(payload, headers)
            assert status == 200
            assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED", (worker, body)
            assert int(reply_headers["Retry-After"]) >= 1
    finally:
        for connection in pinned.values():
            connection.close()


def test_an_applicants_budget_holds_across_workers(federation: LocalFederation) -> None:
    # The first question (a total and a table, 0.04 per person) fits the budget of 0.05; a
    # new table about the same persons (0.02 more) asked of the other worker does not: that
    # worker's question is charged at the same node ledger, so it counts none of them.
    pinned = pin_every_worker(federation.gateway_url)
    headers = researcher(federation, "budget")
    try:
        first = answered(pinned[0].post({"query": DIABETES_BY_SEX % APPLICATION}, headers))
        assert first["count"]["value"] > 100
        second = answered(pinned[1].post({"query": DIABETES_BY_AGE % APPLICATION}, headers))
        (node,) = second["byJurisdiction"]
        assert node["status"] == "OK"
        assert node["privacy"]["spentRho"] == pytest.approx(0.06)
        assert node["privacy"]["capRho"] == pytest.approx(BUDGET_RHO)
        released = [c["count"]["value"] for c in second["breakdown"]["cells"]]
        released = [value for value in released if value is not None]
        # Noise on zero: LOW, bar where noise alone reached FR's minimum (11) and then small.
        assert len(released) <= 3
        assert all(value <= 11 + 6 * 5 for value in released)
    finally:
        for connection in pinned.values():
            connection.close()


def test_audit_chains_verify_together_and_a_killed_worker_loses_nothing_audited(
    federation: LocalFederation, tmp_path: Path
) -> None:
    pinned = pin_every_worker(federation.gateway_url)
    headers = researcher(federation, "audit")
    payload = {"query": HYPERTENSION % APPLICATION}
    asked: list[str] = []
    try:
        for worker in sorted(pinned):
            asked.append(answered(pinned[worker].post(payload, headers))["queryId"])
    finally:
        for connection in pinned.values():
            connection.close()
    code, output = audit_verify(federation)
    assert code == 0, output
    chains = [line.split(": ")[0] for line in output.splitlines() if ": OK: " in line]
    assert len([c for c in chains if c.startswith("gateway:")]) == WORKERS, output

    # Tampering with one worker's chain breaks that chain, and verification as a whole.
    second_chain = next(c for c in chains if c.endswith("/worker-1"))
    copy = tmp_path / "tampered.sqlite3"
    with (
        closing(sqlite3.connect(federation.gateway_audit_db)) as live,
        closing(sqlite3.connect(copy)) as edited,
    ):
        live.backup(edited)
        edited.execute("DROP TRIGGER tessera_audit_entries_no_update")
        changed = edited.execute(
            "UPDATE tessera_audit_entries SET body = replace(body, 'scientific_research', "
            "'commercial') WHERE chain = ? AND seq = 1",
            (second_chain,),
        )
        assert changed.rowcount == 1
        edited.commit()
    code, output = audit_verify(federation, copy)
    assert code == 1, output
    assert f"{second_chain}: BROKEN at entry 1" in output, output
    assert sum(": OK: " in line for line in output.splitlines()) == WORKERS - 1, output

    # A worker killed outright is started again in its slot; every answer already given
    # is in the trail, and every chain still verifies.
    before = worker_pids(federation)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = worker_pids(federation)
        if len(now) == WORKERS and victim not in now:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the killed worker was not started again: {worker_pids(federation)}")
    pinned = pin_every_worker(federation.gateway_url)
    try:
        for worker in sorted(pinned):
            asked.append(answered(pinned[worker].post(payload, headers))["queryId"])
        for query_id in asked:
            for worker in sorted(pinned):
                status, _, body = pinned[worker].post(
                    {"query": AUDIT_ENTRY, "variables": {"id": query_id}}, compliance(federation)
                )
                assert status == 200
                assert "errors" not in body, body
                entry = body["data"]["auditEntry"]
                assert entry is not None, (query_id, worker)
                assert entry["decision"] == "ANSWERED"
        status, _, body = pinned[0].post({"query": AUDIT_CHAINS}, compliance(federation))
        assert [c["worker"] for c in body["data"]["auditChains"]] == list(range(WORKERS))
    finally:
        for connection in pinned.values():
            connection.close()
    code, output = audit_verify(federation)
    assert code == 0, output


def test_sigterm_stops_every_worker_and_each_signs_its_chain(federation: LocalFederation) -> None:
    # The last test of the module: it stops the gateway.
    gateway = federation.service("gateway")
    assert gateway.process is not None
    workers = worker_pids(federation)
    gateway.stop(grace_s=30)
    assert gateway.process.returncode == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    code, output = audit_verify(federation)
    assert code == 0, output
    chains = [line for line in output.splitlines() if line.startswith("gateway:")]
    assert len(chains) == WORKERS, output
    # Each worker signed its chain's head as it closed.
    assert all("signatures verified" in line for line in chains), output
