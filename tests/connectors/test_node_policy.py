"""The node's policy: the datasets it serves (failing closed), and rules and revocations
applied while it runs, without a restart."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from connectors.app import SERVICE, create_app
from connectors.node_policy import NodePolicy, load_node_policy
from connectors.settings import ConnectorSettings
from policies.loader import DEFAULT_DIRECTORY
from policies.reasons import RuleId
from schema.codes import Jurisdiction
from schema.errors import SettingsError
from schema.wire import APPROVAL_HEADER, QUERY_PATH
from tests.connectors.connector_kit import HDAB_ISSUER, approval_token, policy, request_body

FR = Jurisdiction.FR
Sign = Callable[..., str]
Client = TestClient[Any, Any]
NODE_LAYER = """name = "A hub of FR"

[node]
id = "tessera-node-fr"
jurisdiction = "FR"
{datasets}

[approvals.revoked]
value = [{revoked}]
source = "HDAB revocation notice"
"""


def node_layer(path: Path, *, datasets: str = "", revoked: str = "") -> Path:
    path.write_text(NODE_LAYER.format(datasets=datasets, revoked=revoked))
    return path


def replace_in(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


def test_a_node_without_named_datasets_serves_one_named_after_it(tmp_path: Path) -> None:
    assert NodePolicy.of(policy(), "tessera-node-fr").datasets == {"tessera-node-fr"}
    layer = node_layer(tmp_path / "node.toml")
    assert load_node_policy(FR, "hub-7", node_layer=layer).datasets == {"hub-7"}
    named = node_layer(tmp_path / "named.toml", datasets='datasets = ["cdm", "registry"]')
    assert load_node_policy(FR, "hub-7", node_layer=named).datasets == {"cdm", "registry"}


def test_the_reload_interval_is_a_setting(tmp_path: Path) -> None:
    base = {"TESSERA_CONNECTOR_JURISDICTION": "FR", "TESSERA_CONNECTOR_DATABASE": "x.duckdb"}
    assert ConnectorSettings.from_env(base).policy_reload_s == 5.0
    given = {**base, "TESSERA_CONNECTOR_POLICY_RELOAD_S": "0.5"}
    assert ConnectorSettings.from_env(given).policy_reload_s == 0.5
    for bad in ("0", "never"):
        with pytest.raises(SettingsError, match="POLICY_RELOAD_S"):
            ConnectorSettings.from_env({**base, "TESSERA_CONNECTOR_POLICY_RELOAD_S": bad})


@pytest.fixture
def layer(tmp_path: Path) -> Path:
    return node_layer(tmp_path / "fr-node.toml")


@pytest.fixture
async def client(
    tmp_path: Path, omop_db: Path, gateway_public_pem: Path, hdab_public_pem: Path, layer: Path
) -> AsyncIterator[Client]:
    key = tmp_path / "audit.key.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
    )
    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_DIRECTORY, policies)
    settings = ConnectorSettings(
        jurisdiction=FR,
        database=omop_db,
        gateway_keys={"gateway-2024": gateway_public_pem},
        audit_key=key,
        audit_db=str(tmp_path / "audit.sqlite3"),
        state_dir=tmp_path / "state",
        hdab_issuer=HDAB_ISSUER,
        hdab_public_key=hdab_public_pem,
        policies=policies,
        node_policy=layer,
    )
    client: Client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    yield client
    await client.close()


async def ask(client: Client, sign: Sign, permit: str) -> Any:
    body = request_body()
    response = await client.post(
        QUERY_PATH,
        data=body,
        headers={"Authorization": f"Bearer {sign(body)}", APPROVAL_HEADER: permit},
    )
    assert response.status == 200, await response.text()
    return await response.json()


def rules(answer: Any) -> list[str]:
    return [r["rule"] for r in answer["reasons"]]


@pytest.mark.parametrize(
    "datasets",
    [[], ["uk-biobank"]],
    ids=["none-named", "another-dataset"],
)
async def test_a_permit_naming_none_of_the_nodes_datasets_is_refused(
    client: Client, sign: Sign, datasets: list[str]
) -> None:
    permit = approval_token(
        approval={
            "request_id": "DR-2026-0042",
            "purpose": "scientific_research",
            "jurisdictions": ["FR"],
            "datasets": datasets,
        }
    )
    answer = await ask(client, sign, permit)
    assert answer["status"] == "DENIED"
    assert rules(answer) == [RuleId.DATASET_NOT_APPROVED]
    assert answer["reasons"][0]["message"] == (
        "the approval names none of the datasets FR serves here: tessera-node-fr"
    )
    assert (await ask(client, sign, approval_token()))["status"] == "OK"


async def test_a_revocation_and_a_new_dataset_apply_without_a_restart(
    client: Client, sign: Sign, layer: Path
) -> None:
    live = client.app[SERVICE].policies
    assert (await ask(client, sign, approval_token()))["status"] == "OK"
    node_layer(layer, revoked='"DR-2026-0042"')
    assert await live.refresh()
    assert rules(await ask(client, sign, approval_token())) == [RuleId.APPROVAL_REVOKED]
    node_layer(layer, datasets='datasets = ["registry"]')
    assert await live.refresh()
    assert rules(await ask(client, sign, approval_token())) == [RuleId.DATASET_NOT_APPROVED]


async def test_a_broken_reload_keeps_the_policy_and_readyz_says_why(
    client: Client, sign: Sign, layer: Path
) -> None:
    live = client.app[SERVICE].policies
    node_layer(layer, revoked='"DR-2026-0042"')
    assert await live.refresh()
    replace_in(layer, 'jurisdiction = "FR"', 'jurisdiction = "DE"')
    assert not await live.refresh()
    ready = await client.get("/readyz")
    assert ready.status == 200
    detail = (await ready.json())["details"]["policy"]
    assert detail["last_reload"].startswith("failed at ")
    assert "node layer of tessera-node-fr is for DE, not FR" in detail["last_reload"]
    # Still the policy in force before: the revocation holds.
    assert rules(await ask(client, sign, approval_token())) == [RuleId.APPROVAL_REVOKED]
