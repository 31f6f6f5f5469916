"""The federation check's rules: each disagreement between the federation file and what a
node says it is, named with both values. (With real processes:
tests/integration/test_hub_setup.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.federation import Federation, load_federation
from gateway.federation_check import FederationReport, FederationWatch, NodeCheck, compare
from schema.codes import Jurisdiction
from schema.wire import GatewayKeyId, NodeIdentity
from tessera.keys import generate_keypair
from trust.keys import thumbprint

FILE = """
[gateway]
id = "hub-gateway"
signing_key = "keys/gw.key.pem"
signing_kid = "gw-1"

[[issuers]]
iss = "https://id.example.eu"
public_key = "keys/id.pub.pem"
algorithms = ["EdDSA"]
jurisdictions = []

[[issuers]]
iss = "https://hdab.example.fr"
public_key = "keys/hdab-fr.pub.pem"
algorithms = ["EdDSA"]
jurisdictions = ["FR"]

[[nodes]]
jurisdiction = "FR"
node_id = "hub-fr"
url = "http://127.0.0.1:9"
datasets = ["omop-fr"]
"""


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    for name in ("gw", "id", "hdab-fr"):
        generate_keypair(tmp_path / "keys", name)
    path = tmp_path / "federation.toml"
    path.write_text(FILE)
    return load_federation(path)


def agreeing(federation: Federation) -> NodeIdentity:
    return NodeIdentity(
        node_id="hub-fr",
        jurisdiction=Jurisdiction.FR,
        gateway_issuer="hub-gateway",
        approval_audience="hub-gateway",
        gateway_keys=[
            GatewayKeyId(kid="gw-1", thumbprint=thumbprint(federation.signing_key.public_key()))
        ],
        hdab_issuer="https://hdab.example.fr",
        datasets=["omop-fr"],
    )


def findings(federation: Federation, **changes: object) -> list[tuple[str, str, str, str]]:
    identity = agreeing(federation).model_copy(update=changes)
    node = federation.nodes[Jurisdiction.FR]
    return [(f.what, f.severity, f.expected, f.found) for f in compare(federation, node, identity)]


def test_a_node_that_agrees_has_no_finding(federation: Federation) -> None:
    assert findings(federation) == []


def test_a_wrong_node_id_names_both(federation: Federation) -> None:
    identity = agreeing(federation).model_copy(update={"node_id": "tessera-node-fr"})
    (finding,) = compare(federation, federation.nodes[Jurisdiction.FR], identity)
    assert (finding.severity, finding.expected, finding.found) == (
        "error",
        "hub-fr",
        "tessera-node-fr",
    )
    assert "'hub-fr'" in finding.message
    assert "'tessera-node-fr'" in finding.message
    assert "WRONG_NODE" in finding.message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"jurisdiction": Jurisdiction.DE},
            [("jurisdiction", "error", "FR", "DE")],
        ),
        (
            {"gateway_issuer": "tessera-gateway", "approval_audience": "tessera-gateway"},
            [
                ("gateway issuer", "error", "hub-gateway", "tessera-gateway"),
                ("permit audience", "error", "hub-gateway", "tessera-gateway"),
            ],
        ),
        (
            {"approval_audience": "other"},
            [("permit audience", "error", "hub-gateway", "other")],
        ),
        (
            {"gateway_keys": [GatewayKeyId(kid="gw-0", thumbprint="A" * 43)]},
            [("gateway key", "error", "gw-1", "gw-0")],
        ),
        ({"gateway_keys": []}, [("gateway key", "error", "gw-1", "none")]),
        (
            {"hdab_issuer": "https://hdab.example.de"},
            [("HDAB", "error", "https://hdab.example.fr", "https://hdab.example.de")],
        ),
        ({"hdab_issuer": ""}, [("HDAB", "warning", "https://hdab.example.fr", "")]),
        ({"datasets": ["omop-cdm"]}, [("datasets", "warning", "omop-fr", "omop-cdm")]),
    ],
)
def test_each_disagreement(
    federation: Federation,
    changes: dict[str, object],
    expected: list[tuple[str, str, str, str]],
) -> None:
    assert findings(federation, **changes) == expected


def test_a_key_of_the_same_name_but_other_material(federation: Federation) -> None:
    other = GatewayKeyId(kid="gw-1", thumbprint="B" * 43)
    ((what, severity, expected, found),) = findings(federation, gateway_keys=[other])
    assert (what, severity, found) == ("gateway key", "error", "B" * 43)
    assert expected == thumbprint(federation.signing_key.public_key())


def test_the_identity_issuer_does_not_decide_a_country(federation: Federation) -> None:
    """The identity issuer (`jurisdictions = []`) is no HDAB of any node."""
    ((what, severity, _, found),) = findings(federation, hdab_issuer="https://id.example.eu")
    assert (what, severity, found) == ("HDAB", "error", "https://id.example.eu")


def test_the_report_fails_on_an_error_or_a_node_not_reached(federation: Federation) -> None:
    node = federation.nodes[Jurisdiction.FR]
    good = NodeCheck(node, agreeing(federation))
    assert FederationReport((good,)).exit_code == 0
    assert "FR hub-fr (http://127.0.0.1:9, interactive): ok" in FederationReport((good,)).render()
    unreached = NodeCheck(node, None, unreachable="cannot reach it")
    assert FederationReport((unreached,)).exit_code == 1
    identity = agreeing(federation).model_copy(update={"node_id": "x"})
    wrong = NodeCheck(node, identity, findings=compare(federation, node, identity))
    report = FederationReport((wrong,))
    assert report.exit_code == 1
    assert report.errors[0].startswith("FR: node id: the federation file says node_id = 'hub-fr'")
    warned = agreeing(federation).model_copy(update={"hdab_issuer": ""})
    only_warning = NodeCheck(node, warned, findings=compare(federation, node, warned))
    assert FederationReport((only_warning,)).exit_code == 0


async def test_the_gateway_s_watch_holds_readiness_until_the_node_agrees(
    federation: Federation, tmp_path: Path
) -> None:
    """A node that disagrees (say, not yet re-reading a rotated key) is asked again every
    few seconds, and the gateway is ready again as soon as it agrees."""
    said = {"identity": agreeing(federation).model_copy(update={"node_id": "hub-fr-old"})}

    async def ready(request: web.Request) -> web.Response:
        return web.json_response(
            {"ready": True, "problems": {}, "identity": said["identity"].model_dump()}
        )

    app = web.Application()
    app.router.add_get("/readyz", ready)
    server = TestServer(app)
    await server.start_server()
    path = tmp_path / "federation.toml"
    path.write_text(FILE.replace("http://127.0.0.1:9", str(server.make_url("")).rstrip("/")))
    watch = FederationWatch(load_federation(path), retry_s=0.05, recheck_s=3600)
    await watch.start()
    try:
        reason = await until(watch, lambda r: r is not None)
        assert reason is not None
        assert "'hub-fr'" in reason
        assert "'hub-fr-old'" in reason
        said["identity"] = agreeing(federation)
        assert await until(watch, lambda r: r is None) is None
        assert watch.details() == {"FR": "agrees"}
    finally:
        await watch.stop()
        await server.close()


async def until(watch: FederationWatch, done: Callable[[str | None], bool]) -> str | None:
    for _ in range(200):
        if watch.report is not None:
            reason = await watch.readiness()
            if done(reason):
                return reason
        await asyncio.sleep(0.02)
    pytest.fail(f"the watch did not get there: {watch.details()}")
