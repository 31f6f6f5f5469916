"""A hub set-up that disagrees with its nodes is caught before the first query: by
`tessera federation check`, and by the gateway at start (its log and `/readyz`), each
naming both values. Real connector and gateway processes on loopback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tessera.local import LocalFederation
from tessera.processes import Service, free_port

pytestmark = pytest.mark.integration


def tessera(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tessera", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def readyz(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def miswritten(federation: LocalFederation, name: str, *replacements: tuple[str, str]) -> Path:
    """A copy of the federation file beside it (its key paths are relative to it)."""
    text = federation.federation_file.read_text()
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    path = federation.federation_file.with_name(name)
    path.write_text(text)
    return path


def test_the_demo_federation_file_agrees_with_its_nodes(federation: LocalFederation) -> None:
    done = tessera("federation", "check", str(federation.federation_file))
    assert done.returncode == 0, done.stdout + done.stderr
    for j in federation.jurisdictions:
        assert (
            f"{j.value} {federation.node_id(j)} ({federation.node_url(j)}, interactive): ok"
            in done.stdout
        )
    # The running gateway checked too, and says so.
    status, body = readyz(federation.gateway_url.removesuffix("/graphql"))
    assert status == 200
    assert "federation" in body["checks"]
    deadline = time.monotonic() + 30
    while set(body["details"]["federation"].values()) != {"agrees"}:
        assert time.monotonic() < deadline, body["details"]
        time.sleep(0.5)
        body = readyz(federation.gateway_url.removesuffix("/graphql"))[1]


def test_a_wrong_node_id_and_audience_are_named_by_the_check(
    federation: LocalFederation,
) -> None:
    bad = miswritten(
        federation,
        "wrong-ids.toml",
        ('node_id = "tessera-node-fr"', 'node_id = "tessera-node-fx"'),
        ('id = "tessera-gateway"', 'id = "hub-gateway"'),
    )
    done = tessera("federation", "check", str(bad))
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "node_id = 'tessera-node-fx', the node at" in out
    assert "is 'tessera-node-fr'" in out
    assert "the gateway's id is 'hub-gateway'" in out
    assert "the node expects requests from 'tessera-gateway'" in out
    assert "researchers' tokens and permits are for 'hub-gateway'" in out
    assert "the node accepts permits for 'tessera-gateway'" in out


def test_a_broken_file_is_exit_code_2(federation: LocalFederation) -> None:
    bad = miswritten(federation, "no-key.toml", ("keys/gateway", "keys/missing-gateway"))
    done = tessera("federation", "check", str(bad))
    assert done.returncode == 2
    assert "gateway.signing_key: cannot read" in done.stderr
    assert "No such file or directory" in done.stderr


def test_a_node_that_cannot_be_reached_is_reported(federation: LocalFederation) -> None:
    unused = f"http://127.0.0.1:{free_port()}"
    bad = miswritten(
        federation, "unreached.toml", (federation.node_url(federation.members[0]), unused)
    )
    done = tessera("federation", "check", str(bad), "--timeout", "2")
    assert done.returncode == 1
    assert f"not checked: cannot reach {unused}/readyz" in done.stdout


def start_gateway(federation_file: Path, directory: Path) -> Service:
    port = free_port()
    gateway = Service(
        name="gateway with a miswritten federation file",
        args=[
            *("gateway", "serve", "--federation", str(federation_file)),
            *("--host", "127.0.0.1", "--port", str(port)),
            *("--audit-db", str(directory / "audit.sqlite3")),
        ],
        base_url=f"http://127.0.0.1:{port}",
        log_path=directory / "gateway.log",
    )
    gateway.start()
    return gateway


def gateway_readyz(
    gateway: Service, done: Callable[[int, dict[str, Any]], bool], timeout_s: float = 60
) -> tuple[int, dict[str, Any]]:
    """The gateway's /readyz once `done` says it is what the test waits for."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert gateway.process is not None
        assert gateway.process.poll() is None, gateway.tail()
        try:
            status, body = readyz(gateway.base_url)
        except OSError:
            status, body = 0, {}
        if done(status, body):
            return status, body
        assert time.monotonic() < deadline, (status, body)
        time.sleep(0.2)


def checked(status: int, body: dict[str, Any]) -> bool:
    """The federation check ran against every node (none still `checking` or unreached)."""
    found = body.get("details", {}).get("federation", {})
    return (
        bool(found)
        and "state" not in found
        and not any(v.startswith("not checked") for v in found.values())
    )


def test_a_wrong_gateway_id_fails_the_gateway_at_start_naming_both(
    federation: LocalFederation, tmp_path: Path
) -> None:
    """No node takes requests from, or permits for, a gateway called otherwise: nothing
    could be answered, and the gateway is not ready, saying why."""
    bad = miswritten(federation, "wrong-id.toml", ('id = "tessera-gateway"', 'id = "hub-gw"'))
    gateway = start_gateway(bad, tmp_path)
    try:
        _, body = gateway_readyz(
            gateway, lambda s, b: s == 503 and "federation" in b.get("problems", {})
        )
        problem = body["problems"]["federation"]
        for j in federation.jurisdictions:
            assert f"{j.value}: gateway issuer: the gateway's id is 'hub-gw'" in problem
        assert "the node expects requests from 'tessera-gateway'" in problem
        assert "researchers' tokens and permits are for 'hub-gw'" in problem
        assert "the node accepts permits for 'tessera-gateway'" in problem
        log = gateway.log_path.read_text()
        assert "federation file mismatch: FR: permit audience:" in log
    finally:
        gateway.stop()


def test_a_wrong_node_id_is_logged_and_shown_naming_both(
    federation: LocalFederation, tmp_path: Path
) -> None:
    """One hub's mismatch is reported, and leaves the other hubs to answer."""
    bad = miswritten(
        federation, "wrong-node.toml", ('node_id = "tessera-node-de"', 'node_id = "de-1"')
    )
    gateway = start_gateway(bad, tmp_path)
    try:
        status, body = gateway_readyz(gateway, checked)
        assert status == 200, body
        found = body["details"]["federation"]
        assert found["DE"].startswith("node id: the federation file says node_id = 'de-1'")
        assert "is 'tessera-node-de'" in found["DE"]
        assert found["FR"] == "agrees"
        log = gateway.log_path.read_text()
        assert "federation file mismatch: DE: node id:" in log
        assert "'de-1'" in log
        assert "'tessera-node-de'" in log
    finally:
        gateway.stop()


def test_a_one_country_hub_whose_node_expects_another_audience_fails_at_start(
    federation: LocalFederation, tmp_path: Path
) -> None:
    """France's node set up for permits addressed to another gateway: every permit would be
    refused there (APPROVAL_INVALID); a gateway of France alone is not ready, naming both
    audiences."""
    fr = federation.members[0]
    port = free_port()
    node = federation.connector_service(fr, port=port, name="FR node, other audience")
    node.env = {**node.env, "TESSERA_CONNECTOR_APPROVAL_AUDIENCE": "hub-gateway-test"}
    node.log_path = tmp_path / "connector.log"
    node.start()
    try:
        asyncio.run(node.wait_ready(60))
        text = federation.federation_file.read_text()
        head, *nodes = text.split("[[nodes]]")
        (france,) = [n for n in nodes if f'"{fr.value}"' in n]
        alone = federation.federation_file.with_name("france-alone.toml")
        alone.write_text(
            head + "[[nodes]]" + france.replace(federation.node_url(fr), node.base_url)
        )
        gateway = start_gateway(alone, tmp_path)
        try:
            _, body = gateway_readyz(
                gateway, lambda s, b: s == 503 and "federation" in b.get("problems", {})
            )
            problem = body["problems"]["federation"]
            assert (
                f"{fr.value}: permit audience: researchers' tokens and permits are for "
                "'tessera-gateway' ([gateway] id), the node accepts permits for "
                "'hub-gateway-test'"
            ) in problem
            assert "node id" not in problem
        finally:
            gateway.stop()
    finally:
        node.stop()
