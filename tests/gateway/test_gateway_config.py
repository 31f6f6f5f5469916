"""Settings from the environment and the federation file."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.federation import FederationError, load_federation
from gateway.latency import LatencyClass
from gateway.settings import GatewaySettings
from schema.codes import Jurisdiction
from schema.errors import SettingsError
from tests.gateway.gateway_kit import (
    GATEWAY_ID,
    HDAB_KID,
    IDENTITY,
    ISSUER,
    JWKS_ISSUER_KEYS,
    Keys,
    hdab,
    pem_public,
    write_federation,
    write_hdab_federation,
)


def test_settings_defaults() -> None:
    settings = GatewaySettings.from_env({"TESSERA_GATEWAY_FEDERATION": "fed.toml"})
    assert settings == GatewaySettings(
        federation=Path("fed.toml"),
        host="127.0.0.1",
        port=8400,
        deadline_s=10.0,
        node_timeout_s=None,
        console=False,
    )
    assert settings.node_timeout(10.0) == 10.0
    assert settings.node_timeout(30.0) == 30.0  # a query's own deadline


def test_settings_from_the_environment() -> None:
    settings = GatewaySettings.from_env(
        {
            "TESSERA_GATEWAY_FEDERATION": "/etc/tessera/federation.toml",
            "TESSERA_GATEWAY_HOST": "10.1.2.3",
            "TESSERA_GATEWAY_PORT": "9000",
            "TESSERA_GATEWAY_DEADLINE_S": "4.5",
            "TESSERA_GATEWAY_CONSOLE": "yes",
        }
    )
    assert (settings.host, settings.port, settings.deadline_s, settings.console) == (
        "10.1.2.3",
        9000,
        4.5,
        True,
    )
    assert settings.node_timeout(settings.deadline_s) == 4.5  # defaults to the deadline


def test_overrides_win_and_none_means_not_given() -> None:
    settings = GatewaySettings.from_env(
        {"TESSERA_GATEWAY_FEDERATION": "a.toml", "TESSERA_GATEWAY_PORT": "9000"},
        federation=Path("b.toml"),
        port=None,
        node_timeout_s=2,
    )
    assert (settings.federation, settings.port, settings.node_timeout_s) == (
        Path("b.toml"),
        9000,
        2,
    )


def test_node_timeout_never_exceeds_the_deadline() -> None:
    settings = GatewaySettings.from_env(
        {"TESSERA_GATEWAY_FEDERATION": "f", "TESSERA_GATEWAY_NODE_TIMEOUT_S": "100"}
    )
    assert settings.node_timeout_s == settings.max_deadline_s == 60
    assert settings.node_timeout(settings.deadline_s) == 10
    assert settings.node_timeout(20.0) == 20


def test_each_latency_class_has_its_node_timeout() -> None:
    settings = GatewaySettings.from_env(
        {
            "TESSERA_GATEWAY_FEDERATION": "f",
            "TESSERA_GATEWAY_DEADLINE_S": "120",
            "TESSERA_GATEWAY_NODE_TIMEOUT_S": "8",
            "TESSERA_GATEWAY_BATCH_NODE_TIMEOUT_S": "900",
            "TESSERA_GATEWAY_MAX_DEADLINE_S": "300",
        }
    )
    interactive, batch = LatencyClass.INTERACTIVE, LatencyClass.BATCH
    assert settings.batch_node_timeout_s == 300  # never beyond any deadline
    assert settings.node_timeout(120, interactive) == 8
    assert settings.node_timeout(120, batch) == 120  # the default deadline bounds it
    assert settings.node_timeout(300, batch) == 300  # a researcher's longer deadlineMs
    assert settings.node_timeout(2, batch) == 2  # and a shorter one
    # A time-out counts against a node when its class had what a default question gives.
    assert settings.full_timeouts == {interactive: 8, batch: 120}
    # Unset, both classes wait for the whole deadline, as before classes.
    default = GatewaySettings.from_env({"TESSERA_GATEWAY_FEDERATION": "f"})
    assert default.node_timeout(10, batch) == default.node_timeout(10, interactive) == 10


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({}, "TESSERA_GATEWAY_FEDERATION"),
        ({"TESSERA_GATEWAY_PORT": "http"}, "TESSERA_GATEWAY_PORT"),
        ({"TESSERA_GATEWAY_PORT": "70000"}, "TESSERA_GATEWAY_PORT"),
        ({"TESSERA_GATEWAY_DEADLINE_S": "0"}, "TESSERA_GATEWAY_DEADLINE_S"),
        ({"TESSERA_GATEWAY_DEADLINE_S": "nan"}, "TESSERA_GATEWAY_DEADLINE_S"),
        ({"TESSERA_GATEWAY_NODE_TIMEOUT_S": "-1"}, "TESSERA_GATEWAY_NODE_TIMEOUT_S"),
        ({"TESSERA_GATEWAY_BATCH_NODE_TIMEOUT_S": "0"}, "TESSERA_GATEWAY_BATCH_NODE_TIMEOUT_S"),
        (
            {"TESSERA_GATEWAY_NODE_TIMEOUT_S": "5", "TESSERA_GATEWAY_BATCH_NODE_TIMEOUT_S": "2"},
            "TESSERA_GATEWAY_BATCH_NODE_TIMEOUT_S",
        ),
        # Without a node timeout, interactive nodes get the whole deadline (10 s).
        ({"TESSERA_GATEWAY_BATCH_NODE_TIMEOUT_S": "2"}, "TESSERA_GATEWAY_BATCH_NODE_TIMEOUT_S"),
        ({"TESSERA_GATEWAY_CONSOLE": "maybe"}, "TESSERA_GATEWAY_CONSOLE"),
        ({"TESSERA_GATEWAY_POLICY_RELOAD_S": "0"}, "TESSERA_GATEWAY_POLICY_RELOAD_S"),
        ({"TESSERA_GATEWAY_POLICY_RELOAD_S": "soon"}, "TESSERA_GATEWAY_POLICY_RELOAD_S"),
    ],
)
def test_bad_settings_name_their_variable(environ: dict[str, str], variable: str) -> None:
    if variable != "TESSERA_GATEWAY_FEDERATION":
        environ = {"TESSERA_GATEWAY_FEDERATION": "f.toml", **environ}
    with pytest.raises(SettingsError, match=variable):
        GatewaySettings.from_env(environ)


def test_unknown_override() -> None:
    with pytest.raises(TypeError):
        GatewaySettings.from_env({"TESSERA_GATEWAY_FEDERATION": "f"}, colour="red")


def test_federation_file(tmp_path: Path, keys: Keys) -> None:
    federation = load_federation(write_federation(tmp_path, keys))
    assert federation.gateway_id == GATEWAY_ID
    assert federation.signing_kid == "gateway-1"
    assert federation.members == (Jurisdiction.FR, Jurisdiction.DK, Jurisdiction.NO)
    assert federation.nodes[Jurisdiction.DK].node_id == "tessera-node-dk"
    assert federation.nodes[Jurisdiction.DK].url == "http://127.0.0.1:9/dk"
    assert federation.issuers[ISSUER].algorithms == ("EdDSA",)


def test_issuers_name_the_jurisdictions_whose_permits_they_issue(
    tmp_path: Path, keys: Keys
) -> None:
    federation = load_federation(write_hdab_federation(tmp_path, keys, node_datasets=True))
    FR, DK = Jurisdiction.FR, Jurisdiction.DK
    assert federation.issues_permits_for(hdab(FR), FR)
    assert not federation.issues_permits_for(hdab(FR), DK)
    # An identity issuer authenticates researchers; its tokens decide nothing.
    assert IDENTITY in federation.issuers
    assert not any(federation.issues_permits_for(IDENTITY, j) for j in federation.members)
    assert not federation.issues_permits_for("https://hdab.nowhere.test", FR)
    assert federation.nodes[DK].datasets == {"tessera-node-dk"}
    # An issuer that names no jurisdictions is shared: its permits count wherever they reach.
    (tmp_path / "shared").mkdir()
    shared = load_federation(write_federation(tmp_path / "shared", keys))
    assert all(shared.issues_permits_for(ISSUER, j) for j in shared.members)
    assert shared.nodes[DK].datasets is None


def test_a_node_may_be_in_the_batch_latency_class(tmp_path: Path, keys: Keys) -> None:
    path = write_federation(tmp_path, keys)
    assert {n.latency for n in load_federation(path).nodes.values()} == {LatencyClass.INTERACTIVE}
    edit(path, 'url = "http://127.0.0.1:9/dk"', 'url = "http://127.0.0.1:9/dk"\nlatency = "batch"')
    nodes = load_federation(path).nodes
    assert nodes[Jurisdiction.DK].latency is LatencyClass.BATCH
    assert nodes[Jurisdiction.FR].latency is LatencyClass.INTERACTIVE
    edit(path, 'latency = "batch"', 'latency = "slow"')
    with pytest.raises(FederationError, match=r"nodes\.1\.latency"):
        load_federation(path)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('jurisdictions = ["FR"]', 'jurisdictions = ["XX"]', "jurisdictions"),
        ('jurisdictions = ["FR"]', 'jurisdictions = "FR"', "jurisdictions"),
        ('datasets = ["tessera-node-dk"]', "datasets = []", "datasets"),
        ('datasets = ["tessera-node-dk"]', 'datasets = [""]', "datasets"),
    ],
)
def test_bad_issuer_jurisdictions_and_node_datasets(
    tmp_path: Path, keys: Keys, old: str, new: str, problem: str
) -> None:
    path = edit(write_hdab_federation(tmp_path, keys, node_datasets=True), old, new)
    with pytest.raises(FederationError, match=problem):
        load_federation(path)


def edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('id = "tessera-gateway"', 'id = "tessera-gateway"\ncolour = "red"', "colour"),
        ('algorithms = ["EdDSA"]', 'algorithms = ["HS256"]', "algorithms"),
        ('algorithms = ["EdDSA"]', 'algorithms = ["none"]', "algorithms"),
        ('algorithms = ["EdDSA"]', "algorithms = []", "algorithms"),
        ('jurisdiction = "DK"', 'jurisdiction = "FR"', "distinct"),
        ('jurisdiction = "DK"', 'jurisdiction = "XX"', "jurisdiction"),
        ('url = "http://127.0.0.1:9/dk"', 'url = "ftp://dk"', "url"),
        ('signing_key = "keys/gateway.key.pem"', 'signing_key = "keys/missing.pem"', "cannot"),
        ('signing_key = "keys/gateway.key.pem"', 'signing_key = "keys/hdab.pub.pem"', "private"),
        ('algorithms = ["EdDSA"]', 'algorithms = ["ES256"]', "not a key for ES256"),
        ("[gateway]", "[gateway", "TOML"),
    ],
)
def test_bad_federation_files(tmp_path: Path, keys: Keys, old: str, new: str, problem: str) -> None:
    path = edit(write_federation(tmp_path, keys), old, new)
    with pytest.raises(FederationError, match=problem):
        load_federation(path)


def test_issuer_keys_must_fit_their_algorithms(tmp_path: Path, keys: Keys) -> None:
    path = write_federation(tmp_path, keys)
    cases = [
        (ec.generate_private_key(ec.SECP256R1()), "ES256", True),
        (ec.generate_private_key(ec.SECP384R1()), "ES256", False),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "PS256", True),
        # Too short for RS256, which is the point.
        (rsa.generate_private_key(public_exponent=65537, key_size=1024), "RS256", False),  # noqa: S505
        (Ed25519PrivateKey.generate(), "RS256", False),
    ]
    for key, algorithm, fits in cases:
        (tmp_path / "keys" / "hdab.pub.pem").write_bytes(pem_public(key))
        text = path.read_text()
        path.write_text(
            text.split("algorithms = ")[0]
            + f'algorithms = ["{algorithm}"]\n\n'
            + "[[nodes]]"
            + text.split("[[nodes]]", 1)[1]
        )
        if fits:
            assert load_federation(path).issuers[ISSUER].algorithms == (algorithm,)
        else:
            with pytest.raises(FederationError, match=algorithm):
                load_federation(path)


@pytest.mark.parametrize(
    ("keys_lines", "problem"),
    [
        ('public_key = "keys/hdab.pub.pem"\njwks_file = "keys/hdab.jwks.json"', "exactly one"),
        ("", "exactly one"),
        ('jwks_url = "http://hdab.example/jwks.json"', "https"),
        ('jwks_file = "keys/missing.json"', "cannot read"),
        ('jwks_file = "keys/hdab.pub.pem"', "not JSON"),
        ('public_key = "keys/hdab.pub.pem"\nleeway_s = 3600', "leeway_s"),
        ('public_key = "keys/hdab.pub.pem"\nrefresh_s = 1', "refresh_s"),
        ('public_key = "keys/hdab.pub.pem"\ntypes = ["JWT", "x y"]', "types"),
    ],
)
def test_bad_issuer_key_sources(tmp_path: Path, keys: Keys, keys_lines: str, problem: str) -> None:
    path = write_federation(tmp_path, keys, issuer_keys=keys_lines)
    with pytest.raises(FederationError, match=problem):
        load_federation(path)


def test_an_issuer_with_a_jwks_file(tmp_path: Path, keys: Keys) -> None:
    federation = load_federation(write_federation(tmp_path, keys, issuer_keys=JWKS_ISSUER_KEYS))
    issuer = federation.issuers[ISSUER]
    assert issuer.keys.key_set().kids == (HDAB_KID,)
    assert len(federation.refreshing) == 1


def test_security_settings_from_the_environment() -> None:
    settings = GatewaySettings.from_env(
        {
            "TESSERA_GATEWAY_FEDERATION": "f.toml",
            "TESSERA_GATEWAY_INTROSPECTION": "on",
            "TESSERA_GATEWAY_MAX_QUERY_COST": "500",
            "TESSERA_GATEWAY_MAX_BATCH": "1",
            "TESSERA_GATEWAY_RATE_PER_RESEARCHER_PER_MINUTE": "5",
            "TESSERA_GATEWAY_RATE_PER_APPROVAL_PER_DAY": "50",
            "TESSERA_GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/2",
            "TESSERA_GATEWAY_REDIS_PREFIX": "fed-a:",
        }
    )
    assert settings.introspection
    assert (settings.max_query_cost, settings.max_batch) == (500, 1)
    assert (settings.rate_per_researcher_per_minute, settings.rate_per_approval_per_day) == (5, 50)
    assert (settings.redis_url, settings.redis_prefix) == ("redis://127.0.0.1:6379/2", "fed-a:")


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"TESSERA_GATEWAY_MAX_QUERY_COST": "0"}, "MAX_QUERY_COST"),
        ({"TESSERA_GATEWAY_MAX_BATCH": "0"}, "MAX_BATCH"),
        ({"TESSERA_GATEWAY_RATE_PER_RESEARCHER_PER_MINUTE": "-1"}, "RATE_PER_RESEARCHER"),
        ({"TESSERA_GATEWAY_REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL"),
        ({"TESSERA_GATEWAY_INTROSPECTION": "sometimes"}, "INTROSPECTION"),
    ],
)
def test_bad_security_settings_name_their_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        GatewaySettings.from_env({"TESSERA_GATEWAY_FEDERATION": "f.toml", **environ})
