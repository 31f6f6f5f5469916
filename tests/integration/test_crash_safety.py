"""Crash safety of the audit trails, with real processes.

Researchers ask concurrently while the gateway, or a connector, is killed with SIGKILL and
restarted on the same port and files, with no repair. Afterwards every answer a researcher
received has exactly one entry in the gateway's chain (and one in the chain of each node that
answered it), every chain verifies with `tessera audit verify` (the real command), and the
restarted process has signed the head its predecessor left and continues the same chain.
SIGTERM instead lets the query in flight finish: its entry is written, the chain's head
signed and its spans exported before the process exits.

A connector killed after storing a question's new answer and before releasing it keeps the
answer (stored without a sync, which a crash of the process does not lose): asked again, the
restarted node releases the stored numbers and charges nothing more.

The gateway is killed with its trail in SQLite (the default) and, opt-in (`-m slow`), in
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from oversight.audit.store import ENTRIES_TABLE, HEADS_TABLE
from oversight.audit.stores import is_postgres_url
from schema import telemetry as otel
from schema.codes import Jurisdiction
from tessera.local import LocalFederation, policies_with_rate_limits
from tessera.processes import Service, free_port
from tests.integration.federation_kit import post, start_federation
from tests.integration.otlp import OtlpReceiver

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FAULTY_NODE = Path(__file__).with_name("faulty_node.py")
DYING_CONNECTOR = Path(__file__).with_name("dying_connector.py")
DE, DK, SE = Jurisdiction.DE, Jurisdiction.DK, Jurisdiction.SE
SLOW_S = 1.0  # how long SE (a `faulty_node.py --mode slow`) takes to answer
WORKERS = 6
POSTGRES = os.environ.get("TESSERA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")

QUERY = """query($j: [Jurisdiction!]) {
  cohort(request: "DR-2026-0042", jurisdictions: $j,
         criteria: { conditions: [{ vocabulary: ICD10, code: "I10" }] }) {
    queryId traceId count { value }
    byJurisdiction { jurisdiction status }
  }
}"""


@pytest.fixture(scope="module")
def crashing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    directory = tmp_path_factory.mktemp("crash")
    se_port = free_port()
    federation = LocalFederation(
        directory=directory,
        # Load asks far more than a researcher may per minute.
        policies=policies_with_rate_limits(
            directory / "policies", per_minute=100_000, per_day=1_000_000
        ),
        jurisdictions=(DE, DK),
        persons=2_000,
        seed=13,
        gateway_port=free_port(),
        node_ports=[free_port(), free_port()],
        console=False,
        extra_nodes={SE: f"http://127.0.0.1:{se_port}"},
        # A node back from the dead is probed again soon.
        gateway_env={"TESSERA_GATEWAY_CIRCUIT_RESET_S": "0.3"},
    )
    federation.prepare()
    federation.supervisor.add(
        Service(
            name="slow SE",
            program=(str(FAULTY_NODE),),
            args=[
                *("--jurisdiction", "SE", "--port", str(se_port)),
                *("--mode", "slow", "--sleep", str(SLOW_S)),
            ],
            base_url=f"http://127.0.0.1:{se_port}",
            log_path=directory / "logs" / "slow-se.log",
        )
    )
    try:
        asyncio.run(federation.start())
    except BaseException:
        federation.stop()
        raise
    yield federation
    federation.stop()


# -- the researchers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    query_id: str
    trace_id: str
    statuses: dict[str, str]  # node status by jurisdiction


class Load:
    """`WORKERS` researchers asking one after the other, each in a thread, until stopped.
    Records every answer received, in order of arrival, and every failure by kind."""

    def __init__(
        self, federation: LocalFederation, jurisdictions: list[Jurisdiction], url: str = ""
    ) -> None:
        self.url = url or federation.gateway_url
        self.token = federation.researcher()
        self.payload = {"query": QUERY, "variables": {"j": [j.value for j in jurisdictions]}}
        self.answers: list[Answer] = []
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._ask, daemon=True) for _ in range(WORKERS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, failure: type[BaseException] | None, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=40)
        if failure is None:
            assert not any(t.is_alive() for t in self._threads), "a researcher got no reply"

    def _ask(self) -> None:
        while not self._stop.is_set():
            try:
                status, body = post(self.url, self.payload, self.token)
            except (OSError, http.client.HTTPException, ValueError) as e:
                # The gateway died under this query, or is not listening yet.
                with self._lock:
                    self.errors[type(e).__name__] += 1
                self._stop.wait(0.02)
                continue
            cohort = (body.get("data") or {}).get("cohort") if status == 200 else None
            with self._lock:
                if cohort is None:
                    self.errors[f"HTTP {status}: {body.get('errors')}"] += 1
                    continue
                self.answers.append(
                    Answer(
                        query_id=cohort["queryId"],
                        trace_id=cohort["traceId"],
                        statuses={n["jurisdiction"]: n["status"] for n in cohort["byJurisdiction"]},
                    )
                )

    def received(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def wait_until(
        self, what: str, condition: Callable[[list[Answer]], bool], timeout_s: float = 30
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition(self.received()):
            assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s ({self.errors})"
            time.sleep(0.02)


# -- reading the trails, independently of the code under test ------------------------------


@dataclass(frozen=True)
class Row:
    chain: str
    seq: int
    query_id: str | None
    decision: str


Trail = Path | str  # an SQLite file or a postgresql:// URL


def select(trail: Trail, sql: str) -> list[tuple[object, ...]]:
    if isinstance(trail, str) and is_postgres_url(trail):

        async def fetch() -> list[tuple[object, ...]]:
            connection = await asyncpg.connect(trail, timeout=5)
            try:
                return [tuple(row) for row in await connection.fetch(sql)]
            finally:
                await connection.close()

        return asyncio.run(fetch())
    with contextlib.closing(sqlite3.connect(f"file:{trail}?mode=ro", uri=True)) as db:
        return db.execute(sql).fetchall()


def rows(trail: Trail) -> list[Row]:
    found = select(
        trail,
        f"SELECT chain, seq, query_id, decision FROM {ENTRIES_TABLE} ORDER BY seq",  # noqa: S608
    )
    return [Row(*row) for row in found]


def signed_heads(trail: Trail) -> list[int]:
    return [int(row[0]) for row in select(trail, f"SELECT seq FROM {HEADS_TABLE} ORDER BY seq")]  # noqa: S608


def last_seq(trail: Trail) -> int:
    return max((row.seq for row in rows(trail)), default=0)


def audit_verify(trail: Trail, key: Path, *more: str | Path) -> str:
    """`tessera audit verify` as an operator runs it; its output, once it says OK."""
    done = subprocess.run(
        [sys.executable, "-m", "tessera", "audit", "verify", "--db", trail, "--key", key, *more],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": OK: " in done.stdout, done.stdout
    return done.stdout


def assert_every_chain_verifies(federation: LocalFederation, gateway: Trail) -> None:
    trails: dict[str, tuple[Trail, Path]] = dict(federation.audit_trails())
    trails["gateway"] = (gateway, trails["gateway"][1])
    for trail, key in trails.values():
        output = audit_verify(trail, key)
        # Every head is signed by the service's own key (a node that has not reached its
        # 100th entry, nor stopped, has signed none yet).
        heads = re.search(r"(\d+) signed heads, (\d+) signatures verified", output)
        assert "no signed head yet" in output if heads is None else heads[1] == heads[2], output


def assert_each_answer_has_one_entry(
    federation: LocalFederation, answers: list[Answer], gateway_trail: Trail
) -> None:
    """One gateway entry per answer received, with the decision the answer shows; one entry
    in each node's chain for each answer that node gave; no query twice in any chain."""
    gateway = rows(gateway_trail)
    by_query = {row.query_id: row for row in gateway}
    assert len(by_query) == len(gateway)  # no query recorded twice
    for answer in answers:
        entry = by_query.get(answer.query_id)
        assert entry is not None, f"answered query {answer.query_id} has no gateway entry"
        all_ok = set(answer.statuses.values()) == {"OK"}
        assert entry.decision == ("ANSWERED" if all_ok else "PARTIAL")
    for jurisdiction in federation.jurisdictions:
        node = Counter(row.query_id for row in rows(federation.audit_db(jurisdiction)))
        assert not [q for q, n in node.items() if n > 1 and q is not None]
        answered = [a for a in answers if a.statuses.get(jurisdiction.value) == "OK"]
        assert answered
        lost = [a.query_id for a in answered if node[a.query_id] != 1]
        assert not lost, f"{jurisdiction.value} answered {lost} without an entry"


# -- SIGKILL under load -------------------------------------------------------------------


@dataclass(frozen=True)
class Gateway:
    service: Service
    trail: Trail


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])
def gateway(request: pytest.FixtureRequest, crashing: LocalFederation) -> Iterator[Gateway]:
    """The gateway to kill: the federation's own, its trail in SQLite; or a second one of the
    same federation with its trail in a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield Gateway(crashing.service("gateway"), crashing.gateway_audit_db)
        return
    name = f"tessera_crash_{uuid.uuid4().hex[:12]}"
    try:
        admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError, TimeoutError):
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES}")
    port, trail = free_port(), f"{POSTGRES}/{name}"
    service = Service(
        name="gateway-postgres",
        args=[
            *("gateway", "serve", "--federation", str(crashing.federation_file)),
            *("--host", "127.0.0.1", "--port", str(port), "--audit-db", trail),
        ],
        base_url=f"http://127.0.0.1:{port}",
        log_path=crashing.logs_dir / "gateway-postgres.log",
    )
    try:
        service.start()
        asyncio.run(service.wait_ready())
        yield Gateway(service, trail)
    finally:
        service.stop()
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def admin(sql: str) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(f"{POSTGRES}/postgres", timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


def test_sigkill_of_the_gateway_under_load_loses_no_audit_entry(
    crashing: LocalFederation, gateway: Gateway
) -> None:
    trail = gateway.trail
    with Load(crashing, [DE, DK], f"{gateway.service.base_url}/graphql") as load:
        load.wait_until("answers before the kill", lambda a: len(a) >= 20)
        gateway.service.kill()  # SIGKILL, queries in flight
        left_at = last_seq(trail)
        # What the dead process left verifies as it is.
        audit_verify(trail, crashing.audit_trails()["gateway"][1])
        gateway.service.start()  # the same port and trail, at once; no repair
        asyncio.run(gateway.service.wait_ready())
        restarted = len(load.received())
        load.wait_until("answers after the restart", lambda a: len(a) >= restarted + 20)
    answers = load.received()

    # The researchers saw the gateway die under their queries (cut off in flight), then
    # refuse connections until it was back; nothing else went wrong.
    cut_off = {"RemoteDisconnected", "ConnectionResetError", "IncompleteRead", "BrokenPipeError"}
    assert sum(load.errors[kind] for kind in cut_off) >= 1, load.errors
    assert set(load.errors) <= {*cut_off, "ConnectionRefusedError"}, load.errors
    assert_each_answer_has_one_entry(crashing, answers, trail)
    assert_every_chain_verifies(crashing, trail)
    # The restarted gateway signed the head its predecessor left unsigned, then went on with
    # the same chain.
    assert left_at in signed_heads(trail)
    after = {a.query_id for a in answers[restarted:]}
    chain = {row.chain for row in rows(trail)}
    assert len(chain) == 1
    assert all(row.seq > left_at for row in rows(trail) if row.query_id in after)


def test_sigkill_of_a_connector_under_load_loses_no_audit_entry(
    crashing: LocalFederation,
) -> None:
    dk = crashing.service("connector DK")
    trail = crashing.audit_db(DK)

    def dk_ok(answers: list[Answer]) -> list[Answer]:
        return [a for a in answers if a.statuses["DK"] == "OK"]

    with Load(crashing, [DE, DK]) as load:
        load.wait_until("answers before the kill", lambda a: len(dk_ok(a)) >= 15)
        dk.kill()  # SIGKILL, queries in flight
        left_at = last_seq(trail)
        audit_verify(trail, crashing.audit_trails()["connector DK"][1])
        load.wait_until("partial answers", lambda a: len(a) - len(dk_ok(a)) >= 6)
        dk.start()
        asyncio.run(dk.wait_ready())
        restarted = len(load.received())
        load.wait_until("DK again", lambda a: len(dk_ok(a[restarted:])) >= 10)
    answers = load.received()

    # The gateway stayed up: every researcher got an answer, partial while DK was down.
    assert not load.errors
    assert {a.statuses["DK"] for a in answers} == {"OK", "UNAVAILABLE"}
    assert {a.statuses["DE"] for a in answers} == {"OK"}
    assert_each_answer_has_one_entry(crashing, answers, crashing.gateway_audit_db)
    assert_every_chain_verifies(crashing, crashing.gateway_audit_db)
    assert left_at in signed_heads(trail)
    after = {a.query_id for a in dk_ok(answers[restarted:])}
    assert all(row.seq > left_at for row in rows(trail) if row.query_id in after)


# -- SIGTERM ------------------------------------------------------------------------------


def slow_node_requests(federation: LocalFederation) -> int:
    url = f"{federation.service('slow SE').base_url}/stats"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        requests: int = json.loads(response.read())["requests"]
        return requests


def test_sigterm_answers_the_query_in_flight_then_signs_and_flushes(
    crashing: LocalFederation, tmp_path: Path
) -> None:
    receiver = OtlpReceiver()
    receiver.start()
    port = free_port()
    trail = tmp_path / "gateway.sqlite3"
    gateway = Service(
        name="gateway-sigterm",
        args=[
            *("gateway", "serve", "--federation", str(crashing.federation_file)),
            *("--host", "127.0.0.1", "--port", str(port), "--audit-db", str(trail)),
        ],
        base_url=f"http://127.0.0.1:{port}",
        log_path=tmp_path / "gateway.log",
        env={
            "TESSERA_GATEWAY_DEADLINE_S": "10",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            # Ten minutes between exports: only the flush at shutdown can send these spans.
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
            "OTEL_SERVICE_NAME": "",
        },
    )
    gateway.start()
    answers: list[dict[str, object]] = []
    token = crashing.researcher()
    payload = {"query": QUERY, "variables": {"j": ["DE", "SE"]}}
    asking = threading.Thread(
        target=lambda: answers.append(post(f"{gateway.base_url}/graphql", payload, token)[1])
    )
    try:
        asyncio.run(gateway.wait_ready())
        asked = slow_node_requests(crashing)
        asking.start()
        deadline = time.monotonic() + 10
        while slow_node_requests(crashing) == asked:  # until SE has the query
            assert time.monotonic() < deadline, "SE was never asked"
            time.sleep(0.02)
        assert receiver.requests == 0
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGTERM)
        asking.join(timeout=30)
        assert gateway.process.wait(timeout=30) == 0
    finally:
        gateway.kill()
        receiver_spans = list(receiver.spans)
        receiver.stop()

    # The query in flight got its whole answer...
    (body,) = answers
    cohort = body["data"]["cohort"]  # type: ignore[index]
    assert {n["jurisdiction"]: n["status"] for n in cohort["byJurisdiction"]} == {
        "DE": "OK",
        "SE": "OK",
    }
    # ... its entry was written, and the head was signed at shutdown, covering it.
    (entry,) = rows(trail)
    assert (entry.seq, entry.query_id, entry.decision) == (1, cohort["queryId"], "ANSWERED")
    assert signed_heads(trail) == [1]
    log = gateway.log_path.read_text()
    drained = log.index("draining in-flight queries")
    signed = log.index("audit chain gateway:tessera-gateway signed at entry 1: ")
    assert drained < signed < log.index("gateway stopped")
    # The head the service logged is the one in the trail.
    key = crashing.audit_trails()["gateway"][1]
    assert "OK: 1 entries, 1 signed heads, 1 signatures verified, 1 heads kept elsewhere match" in (
        audit_verify(trail, key, "--heads", gateway.log_path)
    )
    # ... and its spans, held for minutes by the batch processor, were flushed on the way out.
    spans = [s for s in receiver_spans if s.trace_id == cohort["traceId"]]
    names = {s.name for s in spans}
    assert {"graphql.operation", "gateway.cohort", "gateway.node_call"} <= names
    (cohort,) = [s for s in spans if s.name == "gateway.cohort"]
    (write,) = [attributes for name, attributes in cohort.events if name == "audit.write"]
    assert write[otel.AUDIT_SEQ] == 1


# -- SIGKILL between the stored answer and its release -------------------------------------

HYPERTENSION_BY_SEX = """{ cohort(request: "DR-2026-0042", referenceDate: "2026-01-01",
    jurisdictions: [DE, DK], criteria: { conditions: [{ vocabulary: ICD10, code: "I10" }] }) {
  byJurisdiction { jurisdiction status privacy { questionRho spentRho } }
  breakdown(by: [JURISDICTION, SEX]) { cells { dimensions { value } count { value status } } }
} }"""


def stored_answers(state: Path) -> dict[tuple[str, ...], int]:
    """Every stored noisy count of the node, by cell key, read from its file directly."""
    found: dict[tuple[str, ...], int] = {}
    for (blob,) in select(state / "answers.sqlite3", "SELECT cells FROM answer"):
        assert isinstance(blob, bytes)
        found |= {tuple(key): int(value) for key, value in json.loads(blob)}
    return found


def spend_files(state: Path) -> dict[str, bytes]:
    """Every account's spend array, as bytes."""
    return {path.name: path.read_bytes() for path in sorted((state / "ledger" / "spend").iterdir())}


def test_a_connector_killed_after_storing_an_answer_releases_it_later_and_charges_once(
    tmp_path: Path,
) -> None:
    federation = start_federation(
        tmp_path / "federation",
        (DE, DK),
        persons=2_000,
        # The gateway asks the node again soon after it died.
        gateway_env={"TESSERA_GATEWAY_CIRCUIT_RESET_S": "0.3"},
    )
    try:
        connector = federation.service("connector DK")
        dying = dataclasses.replace(
            connector,
            name="dying connector DK",
            program=(str(DYING_CONNECTOR),),
            log_path=federation.logs_dir / "dying-connector-dk.log",
            process=None,
            _log=None,
        )
        state = federation.node_state(DK)
        connector.stop()
        dying.start()
        asyncio.run(dying.wait_ready())

        def ask() -> dict[str, object]:
            status, body = post(
                federation.gateway_url, {"query": HYPERTENSION_BY_SEX}, federation.researcher()
            )
            assert status == 200, body
            assert "errors" not in body, body
            cohort: dict[str, object] = body["data"]["cohort"]
            return cohort

        def dk(cohort: dict[str, object]) -> tuple[dict[str, object], dict[str, object]]:
            nodes = cohort["byJurisdiction"]
            assert isinstance(nodes, list)
            node = next(n for n in nodes if n["jurisdiction"] == "DK")
            breakdown = cohort["breakdown"]
            assert isinstance(breakdown, dict)
            cells = {
                c["dimensions"][1]["value"]: c["count"]
                for c in breakdown["cells"]
                if c["dimensions"][0]["value"] == "DK"
            }
            return node, cells

        killed, _ = dk(ask())
        assert killed["status"] == "UNAVAILABLE"  # the node died before answering
        assert dying.process is not None
        assert dying.process.wait(timeout=30) == -signal.SIGKILL
        dying.stop()
        stored = stored_answers(state)
        assert stored, "the killed node stored nothing"
        spend = spend_files(state)

        connector.start()
        asyncio.run(connector.wait_ready())
        node, cells = dk(ask())
        assert node["status"] == "OK", node
        # The stored answer: nothing charged for it now, the first (lost) release's charge
        # counted once: the total and the table by sex, 0.02 each.
        assert node["privacy"] == {"questionRho": 0.0, "spentRho": pytest.approx(0.04)}
        assert spend_files(state) == spend
        assert set(cells) == {key[0] for key in stored if len(key) == 1}
        for sex, count in cells.items():
            noisy = stored[(sex,)]
            # DK releases a noisy count of at least 5 as it is, and withholds the others.
            assert count == (
                {"value": noisy, "status": "PERTURBED"}
                if noisy >= 5
                else {"value": None, "status": "LOW"}
            )
    finally:
        federation.stop()
