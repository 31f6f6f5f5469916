"""Fault injection with real processes: real connectors (DE, DK) and misbehaving nodes
(`faulty_node.py`) behind one gateway. Whatever one node does, the others' answers arrive
within the deadline, every status says what happened, and nothing unsafe is released."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schema.codes import Jurisdiction
from tessera.local import LocalFederation, policies_with_rate_limits
from tessera.processes import Service, free_port
from tests.integration.federation_kit import post

pytestmark = pytest.mark.integration

FAULTY_NODE = Path(__file__).with_name("faulty_node.py")
DE, DK = Jurisdiction.DE, Jurisdiction.DK
# The misbehaving nodes, by jurisdiction: FR's published minimum is 11.
FAULTS = {
    Jurisdiction.FI: "sleep",
    Jurisdiction.NL: "garbage",
    Jurisdiction.FR: "small-count",
    Jurisdiction.BE: "reset",
    Jurisdiction.ES: "die",
    Jurisdiction.SE: "slow",
}
DEADLINE_S = 2.0
SLOW_S = 1.5

QUERY = """query($j: [Jurisdiction!], $deadline: Int) {
  cohort(request: "DR-2026-0042", jurisdictions: $j, deadlineMs: $deadline,
         criteria: { conditions: [{ vocabulary: ICD10, code: "I10" }] }) {
    count { value status reasons { rule jurisdiction message } }
    byJurisdiction { jurisdiction status latencyMs error count { value status } }
    byCountry: breakdown(by: [JURISDICTION]) { cells { dimensions { value } count { value } } }
  }
}"""


def faulty_service(directory: Path, jurisdiction: Jurisdiction, port: int) -> Service:
    mode = FAULTS[jurisdiction]
    return Service(
        name=f"faulty {jurisdiction.value}",
        program=(str(FAULTY_NODE),),
        args=[
            *("--jurisdiction", jurisdiction.value, "--port", str(port), "--mode", mode),
            *("--sleep", str(SLOW_S if mode == "slow" else 60)),
        ],
        base_url=f"http://127.0.0.1:{port}",
        log_path=directory / "logs" / f"faulty-{jurisdiction.value.lower()}.log",
    )


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    directory = tmp_path_factory.mktemp("faults")
    ports = {j: free_port() for j in FAULTS}
    federation = LocalFederation(
        directory=directory,
        # Load asks far more than a researcher may per minute.
        policies=policies_with_rate_limits(
            directory / "policies", per_minute=100_000, per_day=1_000_000
        ),
        jurisdictions=(DE, DK),
        persons=5_000,
        seed=11,
        gateway_port=free_port(),
        node_ports=[free_port(), free_port()],
        console=False,
        extra_nodes={j: f"http://127.0.0.1:{port}" for j, port in ports.items()},
        # A breaker that never opens here: each test sees what its node did, not the
        # circuit (the breaker has its own test below).
        gateway_env={
            "TESSERA_GATEWAY_DEADLINE_S": str(DEADLINE_S),
            "TESSERA_GATEWAY_CIRCUIT_FAILURES": "1000",
        },
    )
    federation.prepare()
    for j, port in ports.items():
        federation.supervisor.add(faulty_service(directory, j, port))
    try:
        asyncio.run(federation.start())
    except BaseException:
        federation.stop()
        raise
    yield federation
    federation.stop()


def ask(
    federation: LocalFederation,
    jurisdictions: list[Jurisdiction],
    *,
    url: str | None = None,
    deadline_ms: int | None = None,
) -> tuple[dict[str, Any], float]:
    token = federation.researcher()
    variables = {"j": [j.value for j in jurisdictions], "deadline": deadline_ms}
    started = time.monotonic()
    status, body = post(
        url or federation.gateway_url, {"query": QUERY, "variables": variables}, token
    )
    elapsed = time.monotonic() - started
    assert status == 200, body
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]["cohort"]
    return result, elapsed


def nodes(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["jurisdiction"]: n for n in result["byJurisdiction"]}


def assert_the_real_nodes_answered(result: dict[str, Any], faulty: Jurisdiction) -> None:
    by_node = nodes(result)
    assert by_node["DE"]["status"] == by_node["DK"]["status"] == "OK"
    de, dk = by_node["DE"]["count"]["value"], by_node["DK"]["count"]["value"]
    # The pool is over the nodes that answered, marked as partial; the faulty node's part
    # appears nowhere.
    assert result["count"]["value"] == de + dk
    partial = [r for r in result["count"]["reasons"] if r["rule"] == "PARTIAL"]
    assert partial
    assert faulty.value in partial[0]["message"]
    assert by_node[faulty.value]["count"] is None
    countries = {c["dimensions"][0]["value"] for c in result["byCountry"]["cells"]}
    assert countries == {"DE", "DK"}


def test_a_node_sleeping_past_the_deadline_times_out(faults: LocalFederation) -> None:
    result, elapsed = ask(faults, [DE, DK, Jurisdiction.FI])
    # The sleeper would answer after 60 s; the answer came with the 2 s deadline.
    assert elapsed < 20
    fi = nodes(result)["FI"]
    assert fi["status"] == "TIMEOUT"
    assert fi["latencyMs"] < 20_000
    assert_the_real_nodes_answered(result, Jurisdiction.FI)


def test_a_per_query_deadline_bounds_the_wait(faults: LocalFederation) -> None:
    result, _ = ask(faults, [DE, DK, Jurisdiction.SE], deadline_ms=500)
    # SE answers after 1.5 s: too late for a 0.5 s deadline, in time for the default 2 s.
    assert nodes(result)["SE"]["status"] == "TIMEOUT"
    assert_the_real_nodes_answered(result, Jurisdiction.SE)
    result, _ = ask(faults, [DE, DK, Jurisdiction.SE])
    assert nodes(result)["SE"]["status"] == "OK"


def test_a_node_returning_garbage_is_rejected(faults: LocalFederation) -> None:
    result, _ = ask(faults, [DE, DK, Jurisdiction.NL])
    nl = nodes(result)["NL"]
    assert nl["status"] == "REJECTED"
    assert "tessera/1" in nl["error"]
    assert_the_real_nodes_answered(result, Jurisdiction.NL)


def test_a_count_below_the_published_minimum_is_rejected_and_never_released(
    faults: LocalFederation,
) -> None:
    result, _ = ask(faults, [DE, DK, Jurisdiction.FR])
    fr = nodes(result)["FR"]
    assert fr["status"] == "REJECTED"
    assert "published minimum of 11" in fr["error"]
    # The pool is DE + DK exactly: the 2 FR sent is in no number of the answer.
    assert_the_real_nodes_answered(result, Jurisdiction.FR)


def test_a_node_resetting_connections_is_unavailable(faults: LocalFederation) -> None:
    result, _ = ask(faults, [DE, DK, Jurisdiction.BE])
    assert nodes(result)["BE"]["status"] == "UNAVAILABLE"
    assert_the_real_nodes_answered(result, Jurisdiction.BE)


def test_a_node_killed_mid_answer_is_unavailable(faults: LocalFederation) -> None:
    dying = faults.service("faulty ES")
    if dying.process is None or dying.process.poll() is not None:
        dying.start()
        asyncio.run(dying.wait_ready())
    result, _ = ask(faults, [DE, DK, Jurisdiction.ES])
    assert dying.process is not None
    assert dying.process.wait(timeout=10) == -signal.SIGKILL  # it died during the query
    es = nodes(result)["ES"]
    assert es["status"] == "UNAVAILABLE"
    assert "lost before a complete answer" in es["error"]
    assert_the_real_nodes_answered(result, Jurisdiction.ES)


def stats(service: Service) -> dict[str, int]:
    with urllib.request.urlopen(f"{service.base_url}/stats", timeout=5) as response:  # noqa: S310
        data: dict[str, int] = json.loads(response.read())
        return data


def test_a_client_that_disconnects_cancels_its_fan_out(faults: LocalFederation) -> None:
    sleeper = faults.service("faulty FI")
    before = stats(sleeper)
    credentials = faults.researcher()
    headers = "".join(f"{name}: {value}\r\n" for name, value in credentials.headers())
    body = json.dumps(
        {"query": QUERY, "variables": {"j": ["DE", "FI"], "deadline": 30_000}}
    ).encode()
    host, port = "127.0.0.1", faults.gateway_port
    with socket.create_connection((host, port), timeout=5) as client:
        client.sendall(
            f"POST /graphql HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"{headers}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        # Until the sleeper has the request; then the researcher goes away.
        give_up = time.monotonic() + 10
        while stats(sleeper)["requests"] == before["requests"]:
            assert time.monotonic() < give_up, "the sleeping node was never asked"
            time.sleep(0.05)
    # The sleeper sees its request cancelled long before its 60 s or the 30 s deadline.
    give_up = time.monotonic() + 10
    while stats(sleeper)["cancelled"] == before["cancelled"]:
        assert time.monotonic() < give_up, "the node request outlived its researcher"
        time.sleep(0.05)
    assert stats(sleeper)["answered"] == before["answered"]


def second_gateway(
    faults: LocalFederation, name: str, *, federation: Path | None = None, **env: str
) -> Service:
    port = free_port()
    federation = federation or faults.federation_file
    service = Service(
        name=name,
        args=[
            *("gateway", "serve", "--federation", str(federation)),
            *("--host", "127.0.0.1", "--port", str(port)),
        ],
        base_url=f"http://127.0.0.1:{port}",
        log_path=faults.logs_dir / f"{name}.log",
        env={f"TESSERA_GATEWAY_{k.upper()}": v for k, v in env.items()},
    )
    service.start()
    asyncio.run(service.wait_ready())
    return service


def test_sigterm_drains_in_flight_queries_then_exits(faults: LocalFederation) -> None:
    gateway = second_gateway(faults, "gateway-drain", deadline_s="5")
    url = f"{gateway.base_url}/graphql"
    answers: list[dict[str, Any]] = []
    # SE answers after 1.5 s: the query is in flight when SIGTERM arrives.
    asking = threading.Thread(
        target=lambda: answers.append(ask(faults, [DE, Jurisdiction.SE], url=url)[0])
    )
    asking.start()
    try:
        time.sleep(0.5)
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        # No new connections once it is shutting down...
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(url.split(":")[2].split("/")[0])), 1)
        asking.join(timeout=15)
        # ... but the query in flight got its whole answer, and then the process exited.
        assert answers
        assert nodes(answers[0])["SE"]["status"] == "OK"
        assert gateway.process.wait(timeout=15) == 0
    finally:
        gateway.kill()
    log = gateway.log_path.read_text()
    drained = log.index("draining in-flight queries")
    assert drained < log.index("closed the connections to the nodes") < log.index("stopped")


def test_a_dead_node_opens_its_circuit_and_is_asked_again_after_restart(
    faults: LocalFederation,
) -> None:
    gateway = second_gateway(faults, "gateway-breaker", circuit_failures="2", circuit_reset_s="1")
    url = f"{gateway.base_url}/graphql"
    dk = faults.service("connector DK")
    try:
        dk.kill()  # SIGKILL
        first, _ = ask(faults, [DE, DK], url=url)
        assert nodes(first)["DK"]["status"] == "UNAVAILABLE"
        assert "attempts" in nodes(first)["DK"]["error"]  # refused: retried, then given up
        ask(faults, [DE, DK], url=url)
        # Two failures in a row: DK is not asked any more.
        third, _ = ask(faults, [DE, DK], url=url)
        assert nodes(third)["DK"]["status"] == "UNAVAILABLE"
        assert nodes(third)["DK"]["error"].startswith("CIRCUIT_OPEN")
        assert nodes(third)["DE"]["status"] == "OK"
        # Restarted, with no repair: after the reset time one probe closes the circuit.
        dk.start()
        asyncio.run(dk.wait_ready())
        time.sleep(1.1)
        fourth, _ = ask(faults, [DE, DK], url=url)
        assert nodes(fourth)["DK"]["status"] == "OK"
        assert fourth["count"]["reasons"] == [] or all(
            r["rule"] != "PARTIAL" for r in fourth["count"]["reasons"]
        )
    finally:
        gateway.stop()
        if dk.process is None or dk.process.poll() is not None:
            dk.start()
            asyncio.run(dk.wait_ready())


def test_a_batch_hub_is_waited_for_and_a_hung_interactive_node_is_not(
    faults: LocalFederation,
) -> None:
    # SE (answers after 1.5 s) is a batch hub in this gateway's federation file; interactive
    # nodes get 0.5 s, the batch class 5 s, within a 5 s deadline.
    text = faults.federation_file.read_text()
    se = f'url = "{faults.node_url(Jurisdiction.SE)}"\n'
    batch = faults.federation_file.with_name("federation-batch.toml")
    batch.write_text(text.replace(se, se + 'latency = "batch"\n'))
    gateway = second_gateway(
        faults,
        "gateway-latency",
        federation=batch,
        deadline_s="5",
        node_timeout_s="0.5",
        batch_node_timeout_s="5",
        audit_db=str(faults.directory / "audit-latency.sqlite3"),
    )
    url = f"{gateway.base_url}/graphql"
    try:
        result, elapsed = ask(faults, [DE, DK, Jurisdiction.SE, Jurisdiction.FI], url=url)
        by_node = nodes(result)
        assert by_node["SE"]["status"] == "OK"  # 1.5 s: past 0.5 s, within its class's 5 s
        assert by_node["FI"]["status"] == "TIMEOUT"  # the sleeper, given up after 0.5 s
        assert by_node["FI"]["latencyMs"] < 1_500
        assert elapsed < 4.5  # SE's 1.5 s, not the 5 s deadline
        # Without the batch hub, the question is not held for its class: 0.5 s for FI.
        result, elapsed = ask(faults, [DE, DK, Jurisdiction.FI], url=url)
        assert elapsed < 3.0
        assert_the_real_nodes_answered(result, Jurisdiction.FI)
        # A researcher's deadline shorter than the batch class's timeout bounds the hub.
        result, _ = ask(faults, [DE, DK, Jurisdiction.SE], url=url, deadline_ms=800)
        assert nodes(result)["SE"]["status"] == "TIMEOUT"
        assert_the_real_nodes_answered(result, Jurisdiction.SE)
    finally:
        gateway.stop()
