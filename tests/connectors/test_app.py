"""The connector's HTTP service, through aiohttp's test client, and `serve` as a process."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from connectors.app import create_app
from connectors.backends.base import Backend
from connectors.backends.fake import FakeBackend
from connectors.backends.schemas import SchemaLayout
from connectors.compiler import DUCKDB, POSTGRES
from connectors.noise import ShiftedNoise
from connectors.settings import ConnectorSettings
from schema.codes import Dimension, Jurisdiction, Vocabulary
from schema.errors import SettingsError
from schema.query import Criteria, EventCriterion
from schema.wire import (
    HEALTH_PATH,
    MAX_REQUEST_BYTES,
    QUERY_PATH,
    READY_PATH,
    GatewayKeyId,
    NodeIdentity,
    body_hash,
)
from tests.connectors.connector_kit import HDAB_ISSUER, approval_token, request_body
from trust.keys import thumbprint

Sign = Callable[..., str]
Client = TestClient[Any, Any]
ROOT = Path(__file__).resolve().parents[2]


def audit_key(directory: Path) -> Path:
    """The node's audit signing key, beside its database (made once)."""
    path = directory / "audit.key.pem"
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return path


def settings(database: Path, keys: dict[str, Path], hdab: Path | None) -> ConnectorSettings:
    return ConnectorSettings(
        jurisdiction=Jurisdiction.FR,
        database=database,
        gateway_keys=keys,
        audit_key=audit_key(database.parent),
        hdab_issuer=HDAB_ISSUER,
        hdab_public_key=hdab,
        # A ledger of its own per app: the database is shared by the whole session.
        state_dir=database.parent / f"state-{uuid.uuid4().hex}",
    )


async def start(app_settings: ConnectorSettings, backend: Backend | None = None) -> Client:
    # No noise (the fake adds 0), so the tests can check the node's arithmetic.
    app = create_app(app_settings, backend=backend, noise=ShiftedNoise())
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def client(
    omop_db: Path, gateway_public_pem: Path, hdab_public_pem: Path
) -> AsyncIterator[Client]:
    client = await start(settings(omop_db, {"gateway-2024": gateway_public_pem}, hdab_public_pem))
    yield client
    await client.close()


async def post(
    client: Client, body: bytes, token: str | None, approval: str | None = None
) -> tuple[int, Any]:
    """POST a node request; `approval` defaults to a valid one from the node's HDAB."""
    headers = {"Content-Type": "application/json", "X-Tessera-Approval": approval_token()}
    if approval is not None:
        headers["X-Tessera-Approval"] = approval
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = await client.post(QUERY_PATH, data=body, headers=headers)
    assert response.content_type == "application/json"
    return response.status, await response.json()


async def test_health_is_always_ok(client: Client) -> None:
    response = await client.get(HEALTH_PATH)
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_ready_when_keys_are_loaded_and_the_database_answers(client: Client) -> None:
    response = await client.get(READY_PATH)
    assert response.status == 200
    body = await response.json()
    assert (body["ready"], body["problems"]) == (True, {})
    assert body["checks"] == ["audit", "database", "gateway_keys", "hdab_keys"]
    # Which policy is in force (a digest of its files), and that it loaded.
    policy = body["details"]["policy"]
    assert set(policy) == {"version", "loaded_at", "last_reload"}
    assert policy["last_reload"] == "ok"


async def test_ready_says_who_the_node_is_and_whom_it_trusts(
    client: Client, gateway_key: Ed25519PrivateKey
) -> None:
    """What a gateway's federation file must agree with (`tessera federation check`)."""
    body = await (await client.get(READY_PATH)).json()
    identity = NodeIdentity.model_validate(body["identity"])
    assert (identity.node_id, identity.jurisdiction) == ("tessera-node-fr", Jurisdiction.FR)
    assert identity.gateway_issuer == identity.approval_audience == "tessera-gateway"
    assert identity.hdab_issuer == HDAB_ISSUER
    assert identity.gateway_keys == [
        GatewayKeyId(kid="gateway-2024", thumbprint=thumbprint(gateway_key.public_key()))
    ]
    assert identity.datasets == ["tessera-node-fr"]


async def test_an_unready_node_still_says_who_it_is(omop_db: Path, hdab_public_pem: Path) -> None:
    client = await start(
        settings(omop_db, {}, hdab_public_pem).model_copy(update={"node_id": "hub-fr-1"})
    )
    try:
        response = await client.get(READY_PATH)
        assert response.status == 503
        identity = (await response.json())["identity"]
        assert (identity["node_id"], identity["gateway_keys"]) == ("hub-fr-1", [])
    finally:
        await client.close()


async def test_not_ready_while_shutting_down(client: Client) -> None:
    await client.app.shutdown()  # the on_shutdown step of a SIGTERM
    response = await client.get(READY_PATH)
    assert response.status == 503
    body = await response.json()
    assert (body["ready"], body["problems"]) == (False, {"lifecycle": "shutting down"})
    assert (await client.get(HEALTH_PATH)).status == 200


async def test_not_ready_without_tessera_tables(
    bare_cdm_db: Path, gateway_public_pem: Path, hdab_public_pem: Path
) -> None:
    client = await start(
        settings(bare_cdm_db, {"gateway-2024": gateway_public_pem}, hdab_public_pem)
    )
    try:
        response = await client.get(READY_PATH)
        assert response.status == 503
        body = await response.json()
        assert body["ready"] is False
        assert "tessera connector prepare" in body["problems"]["database"]
        health = await client.get(HEALTH_PATH)
        assert health.status == 200
    finally:
        await client.close()


async def test_not_ready_without_gateway_keys(omop_db: Path, hdab_public_pem: Path) -> None:
    client = await start(settings(omop_db, {}, hdab_public_pem))
    try:
        response = await client.get(READY_PATH)
        assert response.status == 503
        problems = (await response.json())["problems"]
        assert problems == {"gateway_keys": "no gateway public key is configured"}
    finally:
        await client.close()


async def test_counts_and_breakdowns(client: Client, sign: Sign) -> None:
    body = request_body(tables=[(Dimension.SEX,)])
    status, answer = await post(client, body, sign(body))
    assert status == 200
    assert answer["status"] == "OK"
    assert answer["jurisdiction"] == "FR"
    assert answer["optout_register_version"] == "optout-2024-06-01"
    total, by_sex = answer["tables"]
    [cell] = total["cells"]
    assert (
        cell["values"]["PERSON_COUNT"]["value"],
        cell["values"]["PERSON_COUNT"]["status"],
        cell["values"]["PERSON_COUNT"]["sd"],
    ) == (
        47,
        "PERTURBED",
        5.0,
    )
    assert by_sex["by"] == ["SEX"]
    # UNKNOWN (1 person) is below 11, so LOW; nothing else is withheld because of it.
    assert {
        c["key"][0]: (
            c["values"]["PERSON_COUNT"]["value"],
            [r["rule"] for r in c["values"]["PERSON_COUNT"]["reasons"]],
        )
        for c in by_sex["cells"]
    } == {
        "FEMALE": (23, ["NOISE"]),
        "MALE": (23, ["NOISE"]),
        "UNKNOWN": (None, ["BELOW_MINIMUM"]),
    }
    assert answer["privacy"]["question_rho"] == 0.04


async def test_a_count_below_eleven_is_suppressed_in_france(client: Client, sign: Sign) -> None:
    e11 = EventCriterion(vocabulary=Vocabulary.ICD10, code="E11", descendants=False)
    body = request_body(Criteria(conditions=[e11]))  # 5 persons
    status, answer = await post(client, body, sign(body))
    assert status == 200
    [cell] = answer["tables"][0]["cells"]
    assert cell["values"]["PERSON_COUNT"]["value"] is None
    assert cell["values"]["PERSON_COUNT"]["status"] == "LOW"
    [reason] = cell["values"]["PERSON_COUNT"]["reasons"]
    assert reason["rule"] == "BELOW_MINIMUM"
    assert reason["jurisdiction"] == "FR"
    assert "5" not in json.dumps(cell).replace("5.0", "")


def assert_clean(error: dict[str, Any], *secrets: str) -> None:
    """A refusal says which check failed and nothing else: no token, no key, no trace."""
    assert set(error) == {"code", "message"}
    text = json.dumps(error)
    for leak in ("Traceback", "PEM", ".py", "/tmp", *secrets):
        assert leak not in text


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        pytest.param({"key": Ed25519PrivateKey.generate()}, 401, "BAD_SIGNATURE", id="other-key"),
        pytest.param({"kid": "gateway-1999"}, 401, "UNKNOWN_KEY", id="unknown-kid"),
        pytest.param({"aud": "tessera-node-dk"}, 400, "WRONG_NODE", id="wrong-audience"),
        pytest.param({"iss": "someone-else"}, 401, "BAD_SIGNATURE", id="wrong-issuer"),
        pytest.param({"issued_at": time.time() - 300}, 401, "REQUEST_EXPIRED", id="expired"),
        pytest.param({"lifetime": 61}, 401, "BAD_SIGNATURE", id="too-long-lived"),
        pytest.param({"typ": "JWT"}, 401, "BAD_SIGNATURE", id="wrong-typ"),
        pytest.param({"jti": None}, 401, "BAD_SIGNATURE", id="no-jti"),
    ],
)
async def test_a_bad_request_token_is_refused_with_its_code(
    client: Client, sign: Sign, change: dict[str, Any], status: int, code: str
) -> None:
    body = request_body()
    token = sign(body, **change)
    got_status, error = await post(client, body, token)
    assert (got_status, error["code"]) == (status, code)
    assert_clean(error, token)


async def test_missing_token_is_401(client: Client) -> None:
    status, error = await post(client, request_body(), None)
    assert (status, error["code"]) == (401, "BAD_SIGNATURE")


async def test_an_hs256_token_is_refused(client: Client, gateway_key: Ed25519PrivateKey) -> None:
    body = request_body()
    now = int(time.time())
    claims = {"iss": "tessera-gateway", "aud": "tessera-node-fr", "iat": now, "exp": now + 30}
    # The key-confusion attack: the pinned public key used as an HMAC secret (by hand:
    # pyjwt rightly refuses to do it).
    header = {"alg": "HS256", "kid": "gateway-2024", "typ": "tessera-node-request+jwt"}
    segments = [
        base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
        for part in (header, {**claims, "jti": "x", "bsh": body_hash(body)})
    ]
    public_pem = gateway_key.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    mac = hmac.new(public_pem, ".".join(segments).encode(), hashlib.sha256)
    forged = ".".join([*segments, base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()])
    status, error = await post(client, body, forged)
    assert (status, error["code"]) == (401, "BAD_SIGNATURE")


async def test_a_body_altered_after_signing_is_refused(client: Client, sign: Sign) -> None:
    body = request_body()
    token = sign(body)
    altered = body.replace(b'"FR"', b'"DE"')
    status, error = await post(client, altered, token)
    assert (status, error["code"]) == (401, "BODY_MISMATCH")
    assert_clean(error, token)


async def test_a_replayed_request_is_refused(client: Client, sign: Sign) -> None:
    body = request_body()
    token = sign(body)
    first, _ = await post(client, body, token)
    second, error = await post(client, body, token)
    assert (first, second) == (200, 401)
    assert error["code"] == "REPLAYED_REQUEST"
    assert_clean(error, token)


# -- the researcher's approval, checked by the node itself ------------------------------------


@pytest.mark.parametrize(
    ("approval", "code"),
    [
        pytest.param("", "APPROVAL_REQUIRED", id="missing"),
        pytest.param(
            approval_token(key=Ed25519PrivateKey.generate()), "APPROVAL_INVALID", id="other-key"
        ),
        pytest.param(
            approval_token(iat=int(time.time()) - 3600, exp=int(time.time()) - 600),
            "APPROVAL_INVALID",
            id="expired",
        ),
        pytest.param(approval_token(aud="elsewhere"), "APPROVAL_INVALID", id="wrong-audience"),
        pytest.param(approval_token(iss="https://hdab.de.test"), "APPROVAL_INVALID", id="issuer"),
        pytest.param(approval_token(roles=["operator"]), "APPROVAL_INVALID", id="no-role"),
        pytest.param(approval_token(approval=None), "APPROVAL_INVALID", id="no-approval"),
        pytest.param(
            approval_token(request_id="DR-2099-0001"), "APPROVAL_MISMATCH", id="other-request"
        ),
        pytest.param(
            approval_token(jurisdictions=("DE", "DK")), "APPROVAL_MISMATCH", id="not-this-node"
        ),
        pytest.param("not-a-jwt", "APPROVAL_INVALID", id="garbage"),
    ],
)
async def test_a_bad_approval_is_refused(
    client: Client, sign: Sign, approval: str, code: str
) -> None:
    body = request_body()
    status, error = await post(client, body, sign(body), approval=approval)
    assert (status, error["code"]) == (403, code)
    assert_clean(error, *(approval.split(".")[:2] if approval else ()))


async def test_a_node_without_hdab_keys_refuses_every_query(
    omop_db: Path, gateway_public_pem: Path, sign: Sign
) -> None:
    client = await start(settings(omop_db, {"gateway-2024": gateway_public_pem}, None))
    try:
        assert (await client.get(READY_PATH)).status == 503
        body = request_body()
        status, error = await post(client, body, sign(body))
        assert (status, error["code"]) == (403, "APPROVAL_INVALID")
    finally:
        await client.close()


async def test_a_request_for_another_node_is_400(client: Client, sign: Sign) -> None:
    body = request_body(jurisdiction=Jurisdiction.DE)
    status, error = await post(client, body, sign(body))
    assert (status, error["code"]) == (400, "WRONG_NODE")


async def test_refusals_are_logged_at_warning_with_code_and_query_id(
    client: Client, sign: Sign, caplog: pytest.LogCaptureFixture
) -> None:
    body = request_body()
    token = sign(body, aud="tessera-node-dk")
    forged = b'{"query_id": "x\\n2026 CRITICAL forged"}'
    with caplog.at_level(logging.WARNING, logger="connectors.app"):
        await post(client, body, token)
        await post(client, forged, sign(forged))
        await post(client, b"{" + b" " * MAX_REQUEST_BYTES + b"}", None)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert lines == [
        "refused query q-00000001: WRONG_NODE (HTTP 400)",
        "refused query ?: BAD_REQUEST (HTTP 400)",  # not a query id: not logged
        "refused query ?: BODY_TOO_LARGE (HTTP 413)",
    ]


async def test_malformed_json_is_400(client: Client, sign: Sign) -> None:
    body = b'{"protocol": "tessera/1", "query_id": '
    status, error = await post(client, body, sign(body))
    assert (status, error["code"]) == (400, "BAD_REQUEST")
    assert "Traceback" not in error["message"]


async def test_an_oversized_body_is_413(client: Client, sign: Sign) -> None:
    body = b"{" + b" " * MAX_REQUEST_BYTES + b"}"
    status, error = await post(client, body, sign(body))
    assert (status, error["code"]) == (413, "BODY_TOO_LARGE")


async def test_an_oversized_chunked_body_is_413(client: Client, sign: Sign) -> None:
    body = b"{" + b" " * MAX_REQUEST_BYTES + b"}"

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    response = await client.post(
        QUERY_PATH, data=chunks(), headers={"Authorization": f"Bearer {sign(body)}"}
    )
    assert response.status == 413
    assert (await response.json())["code"] == "BODY_TOO_LARGE"


async def test_a_backend_failure_is_503_without_details(
    omop_db: Path, gateway_public_pem: Path, hdab_public_pem: Path, sign: Sign
) -> None:
    client = await start(
        settings(omop_db, {"gateway-2024": gateway_public_pem}, hdab_public_pem),
        FakeBackend(fail=True),
    )
    try:
        body = request_body()
        status, error = await post(client, body, sign(body))
        assert status == 503
        assert error == {"code": "BACKEND_FAILED", "message": "the database failed to answer"}
    finally:
        await client.close()


async def test_unknown_routes_answer_json(client: Client) -> None:
    response = await client.get("/v1/nothing")
    assert response.status == 404
    assert (await response.json())["code"] == "BAD_REQUEST"
    response = await client.get(QUERY_PATH)
    assert response.status == 405


async def test_the_app_closes_its_backend(
    omop_db: Path, gateway_public_pem: Path, hdab_public_pem: Path
) -> None:
    backend = FakeBackend()
    client = await start(
        settings(omop_db, {"gateway-2024": gateway_public_pem}, hdab_public_pem), backend
    )
    await client.close()
    assert backend.closed


def test_an_unreadable_key_is_a_settings_error(omop_db: Path, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="GATEWAY_KEYS"):
        create_app(settings(omop_db, {"gw": tmp_path / "missing.pem"}, None))


# -- settings --------------------------------------------------------------------------------


def test_settings_from_the_environment() -> None:
    s = ConnectorSettings.from_env(
        {
            "TESSERA_CONNECTOR_JURISDICTION": "fr",
            "TESSERA_CONNECTOR_DATABASE": "omop.duckdb",
            "TESSERA_CONNECTOR_PORT": "9000",
            "TESSERA_CONNECTOR_GATEWAY_KEYS": "k1=a.pem, k2=b.pem",
            "TESSERA_CONNECTOR_THREADS": "4",
        }
    )
    assert s.jurisdiction is Jurisdiction.FR
    assert s.node_id == "tessera-node-fr"
    assert s.database == "omop.duckdb"
    assert s.target.path == Path("omop.duckdb")
    assert (s.host, s.port, s.threads) == ("127.0.0.1", 9000, 4)
    assert s.gateway_issuer == "tessera-gateway"
    assert dict(s.gateway_keys) == {"k1": Path("a.pem"), "k2": Path("b.pem")}


def test_trust_settings_from_the_environment() -> None:
    s = ConnectorSettings.from_env(
        {
            "TESSERA_CONNECTOR_JURISDICTION": "FR",
            "TESSERA_CONNECTOR_DATABASE": "omop.duckdb",
            "TESSERA_CONNECTOR_GATEWAY_JWKS": "gateway.jwks.json",
            "TESSERA_CONNECTOR_HDAB_ISSUER": "https://hdab.fr",
            "TESSERA_CONNECTOR_HDAB_JWKS_URL": "https://hdab.fr/jwks.json",
            "TESSERA_CONNECTOR_HDAB_ALGORITHMS": "ES256, EdDSA",
            "TESSERA_CONNECTOR_REDIS_URL": "redis://127.0.0.1:6379/0",
        }
    )
    assert s.gateway_jwks == Path("gateway.jwks.json")
    assert (s.hdab_issuer, s.hdab_jwks_url) == ("https://hdab.fr", "https://hdab.fr/jwks.json")
    assert s.hdab_algorithms == ("ES256", "EdDSA")
    assert s.approval_audience == s.gateway_issuer == "tessera-gateway"
    assert (s.redis_url, s.redis_prefix) == ("redis://127.0.0.1:6379/0", "tessera:")


def test_overrides_win_over_the_environment() -> None:
    env = {"TESSERA_CONNECTOR_JURISDICTION": "DK", "TESSERA_CONNECTOR_PORT": "not a port"}
    s = ConnectorSettings.from_env(env, database=Path("x.duckdb"), port=0, node_id="dk-1")
    assert (s.jurisdiction, s.port, s.node_id) == (Jurisdiction.DK, 0, "dk-1")


J, DB = "TESSERA_CONNECTOR_JURISDICTION", "TESSERA_CONNECTOR_DATABASE"
DSN = "TESSERA_CONNECTOR_DSN"
HI, HP = "TESSERA_CONNECTOR_HDAB_ISSUER", "TESSERA_CONNECTOR_HDAB_PUBLIC_KEY"
PG = {
    J: "FR",
    DB: "postgresql://h/d",
    "TESSERA_CONNECTOR_STATE_DIR": "s",
    "TESSERA_CONNECTOR_AUDIT_DB": "a.sqlite3",
}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({DB: "x"}, rf"--jurisdiction \({J}\) is required"),
        ({J: "FR"}, rf"--database \({DB}\) is required"),
        (
            {J: "FR", DB: "x", DSN: "postgresql://h/d"},
            rf"give --database \({DB}\) only: --dsn \({DSN}\) is its deprecated alias",
        ),
        # Everything missing is named at once, option and variable.
        (
            {DB: "postgresql://h/d"},
            rf"--jurisdiction \({J}\) is required; with a postgresql:// --database \({DB}\) "
            r"also give --state \(TESSERA_CONNECTOR_STATE_DIR\) and --audit-db "
            r"\(TESSERA_CONNECTOR_AUDIT_DB\)",
        ),
        (
            {DSN: "postgres://h/d", "TESSERA_CONNECTOR_STATE_DIR": "s"},
            r"with a postgres:// --database .* also give --audit-db",
        ),
        # An unknown scheme names those there are, and never the URL's password.
        (
            {J: "FR", DB: "mysql://reader:s3cret@h/d"},
            rf"--database \({DB}\): the database mysql://reader:\*\*\*@h/d has a scheme "
            r"Tessera has no backend for: expected duckdb://, postgresql://, postgres://, "
            "spark://, sc:// or the path of a DuckDB file",
        ),
        ({J: "FR", DB: "duckdb://cdm.duckdb"}, r"expected duckdb:///PATH"),
        (
            {J: "FR", DB: "x", "TESSERA_CONNECTOR_CDM_SCHEMA": "cdm"},
            r"go with a --database .* of schemas \(postgresql://, postgres://, sc://\) only",
        ),
        (
            {
                J: "FR",
                DB: "postgresql://h/d",
                "TESSERA_CONNECTOR_STATE_DIR": "s",
                "TESSERA_CONNECTOR_AUDIT_DB": "a.sqlite3",
                "TESSERA_CONNECTOR_CDM_SCHEMA": "Cdm; drop",
            },
            "not a schema name",
        ),
        (
            {
                J: "FR",
                DB: "postgresql://h/d",
                "TESSERA_CONNECTOR_STATE_DIR": "s",
                "TESSERA_CONNECTOR_AUDIT_DB": "a.sqlite3",
                "TESSERA_CONNECTOR_VOCABULARY_SCHEMA": "v",
            },
            "VOCABULARY_SCHEMA.*needs --cdm-schema",
        ),
        ({J: "XX", DB: "x"}, f"{J} is invalid"),
        ({J: "FR", DB: "x", "TESSERA_CONNECTOR_PORT": "eighty"}, "PORT is invalid"),
        ({J: "FR", DB: "x", "TESSERA_CONNECTOR_PORT": "70000"}, "PORT must be between"),
        ({J: "FR", DB: "x", "TESSERA_CONNECTOR_THREADS": "0"}, "THREADS must be between"),
        ({J: "FR", DB: "x", "TESSERA_CONNECTOR_GATEWAY_KEYS": "kid"}, "GATEWAY_KEYS is invalid"),
        ({J: "FR", DB: "x", "TESSERA_CONNECTOR_GATEWAY_KEYS": "a=x,a=y"}, "appears twice"),
        ({J: "FR", DB: "x", "TESSERA_CONNECTOR_HDAB_PUBLIC_KEY": "h.pem"}, "HDAB_ISSUER"),
        (
            {J: "FR", DB: "x", HI: "i", HP: "h.pem", "TESSERA_CONNECTOR_HDAB_JWKS_FILE": "j"},
            "exclude each other",
        ),
        ({J: "FR", DB: "x", HI: "i", "TESSERA_CONNECTOR_HDAB_JWKS_URL": "http://x/j"}, "https"),
        ({J: "FR", DB: "x", "TESSERA_CONNECTOR_HDAB_ALGORITHMS": "HS256"}, "ALGORITHMS"),
        ({J: "FR", DB: "x", "TESSERA_CONNECTOR_REDIS_URL": "localhost:6379"}, "REDIS_URL"),
    ],
)
def test_invalid_settings_name_their_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        ConnectorSettings.from_env(env)


def test_the_database_url_picks_the_backend_and_its_dialect() -> None:
    duck = ConnectorSettings.from_env({J: "FR", DB: "duckdb:///data/fr.duckdb"})
    assert duck.target.dialect is DUCKDB
    assert duck.target.path == Path("data/fr.duckdb")
    assert (duck.state_dir, duck.audit_db) == (Path("data/fr.state"), "data/fr.audit.sqlite3")
    absolute = ConnectorSettings.from_env({J: "FR", DB: "duckdb:////srv/fr.duckdb"})
    assert absolute.target.path == Path("/srv/fr.duckdb")
    server = ConnectorSettings.from_env(PG)
    assert server.target.dialect is POSTGRES
    assert server.target.path is None
    assert server.state_dir == Path("s")


def test_the_old_dsn_setting_is_a_deprecated_alias_of_the_database(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {**PG, DSN: "postgresql://reader:s3cret@h/d"}
    del env[DB]
    with caplog.at_level("WARNING"):
        s = ConnectorSettings.from_env(env)
    assert s.database == "postgresql://reader:s3cret@h/d"
    assert s.target.dialect is POSTGRES
    assert "--dsn (TESSERA_CONNECTOR_DSN) is deprecated" in caplog.text
    assert "s3cret" not in caplog.text
    overridden = ConnectorSettings.from_env({**PG, DB: ""}, dsn="postgresql://h/other")
    assert overridden.database == "postgresql://h/other"


def test_the_ohdsi_layout_from_the_environment() -> None:
    env = {**PG, "TESSERA_CONNECTOR_CDM_SCHEMA": "cdm"}
    assert ConnectorSettings.from_env(env).layout == SchemaLayout("cdm", "cdm")
    env["TESSERA_CONNECTOR_VOCABULARY_SCHEMA"] = "vocab"
    assert ConnectorSettings.from_env(env).layout == SchemaLayout("cdm", "vocab")
    del env["TESSERA_CONNECTOR_CDM_SCHEMA"], env["TESSERA_CONNECTOR_VOCABULARY_SCHEMA"]
    assert ConnectorSettings.from_env(env).layout is None


# -- serve -----------------------------------------------------------------------------------


def test_serve_prints_one_line_when_listening_and_stops_on_sigterm(
    omop_db: Path, gateway_public_pem: Path, hdab_public_pem: Path
) -> None:
    env = {
        **os.environ,
        "TESSERA_CONNECTOR_JURISDICTION": "FR",
        "TESSERA_CONNECTOR_DATABASE": str(omop_db),
        "TESSERA_CONNECTOR_PORT": "0",
        "TESSERA_CONNECTOR_GATEWAY_KEYS": f"gateway-2024={gateway_public_pem}",
        "TESSERA_CONNECTOR_AUDIT_KEY": str(audit_key(omop_db.parent)),
        "TESSERA_CONNECTOR_HDAB_ISSUER": HDAB_ISSUER,
        "TESSERA_CONNECTOR_HDAB_PUBLIC_KEY": str(hdab_public_pem),
    }
    code = (
        "from connectors.app import serve; from connectors.settings import ConnectorSettings; "
        "serve(ConnectorSettings.from_env())"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready, "no line within 30 s"
        line = process.stdout.readline().strip()
        assert line.startswith("connector FR listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        with urllib.request.urlopen(url + READY_PATH, timeout=10) as response:  # noqa: S310
            assert json.loads(response.read())["ready"] is True
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_an_answer_too_large_for_the_gateway_is_refused(
    omop_db: Path,
    gateway_public_pem: Path,
    hdab_public_pem: Path,
    sign: Sign,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("connectors.app.MAX_RESPONSE_BYTES", 200)
    client = await start(settings(omop_db, {"gateway-2024": gateway_public_pem}, hdab_public_pem))
    try:
        body = request_body(tables=[(Dimension.AGE_BAND_5,)])
        status, error = await post(client, body, sign(body))
        assert (status, error["code"]) == (400, "BAD_REQUEST")
        assert "fewer or coarser" in error["message"]
    finally:
        await client.close()
