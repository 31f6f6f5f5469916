"""Researcher tokens through the real HTTP endpoint: what is accepted, and that everything
else is refused with its own stable code and without leaking anything."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.app import create_app
from gateway.nodes import MockNodeClient
from gateway.settings import GatewaySettings
from schema.approval import APPROVAL_CLAIM, ROLES_CLAIM, Role
from tests.gateway.gateway_kit import (
    GATEWAY_ID,
    HDAB_KID,
    ISSUER,
    JWKS_ISSUER_KEYS,
    REQUEST_ID,
    Keys,
    assert_clean_error,
    mint,
    pem_public,
    write_federation,
)
from trust.keys import jwks
from trust.tokens import DEFAULT_LEEWAY_S

COHORT = f'{{ cohort(request: "{REQUEST_ID}", criteria: {{sex: MALE}}) {{ count {{ value }} }} }}'


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    """A JWT assembled by hand, for algorithms pyjwt rightly refuses to produce."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "sub": "researcher",
        "aud": GATEWAY_ID,
        "iat": now,
        "exp": now + 600,
        ROLES_CLAIM: ["researcher"],
        APPROVAL_CLAIM: {
            "request_id": REQUEST_ID,
            "purpose": "scientific_research",
            "jurisdictions": ["FR"],
        },
    }


async def refused(graphql: Any, token: str, code: str, nodes: MockNodeClient) -> dict[str, Any]:
    body: dict[str, Any] = await graphql(COHORT, auth=token)
    # The token, any part of it, and pyjwt's own words never come back.
    parts = [part for part in token.split(".") if len(part) > 8]
    assert_clean_error(body, code, token, *parts, "Signature", "signature has")
    assert nodes.calls == []
    return body


async def test_a_valid_token_is_served(graphql: Any) -> None:
    body = await graphql(COHORT)
    assert body["data"]["cohort"]["count"]["value"] == 500


async def test_alg_none_is_refused(graphql: Any, nodes: MockNodeClient) -> None:
    token = handmade({"alg": "none", "typ": "JWT"}, claims(), lambda _: b"")
    await refused(graphql, token, "TOKEN_ALGORITHM_NOT_ALLOWED", nodes)


async def test_hs256_signed_with_the_issuers_public_key_is_refused(
    graphql: Any, nodes: MockNodeClient, keys: Keys
) -> None:
    # The classic key-confusion attack: the verifier's public key used as an HMAC secret.
    secret = pem_public(keys.hdab)
    token = handmade(
        {"alg": "HS256", "typ": "JWT"},
        claims(),
        lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
    )
    await refused(graphql, token, "TOKEN_ALGORITHM_NOT_ALLOWED", nodes)


async def test_an_expired_token_is_refused(graphql: Any, nodes: MockNodeClient, keys: Keys) -> None:
    now = int(time.time())
    token = mint(keys, iat=now - 900, exp=now - DEFAULT_LEEWAY_S - 1)
    await refused(graphql, token, "TOKEN_EXPIRED", nodes)


async def test_expiry_within_the_leeway_is_accepted(graphql: Any, keys: Keys) -> None:
    now = int(time.time())
    body = await graphql(COHORT, auth=mint(keys, iat=now - 900, exp=now - 5))
    assert body["data"]["cohort"]["count"]["value"] == 500


@pytest.mark.parametrize("claim", ["nbf", "iat"])
async def test_a_token_not_yet_valid_is_refused(
    graphql: Any, nodes: MockNodeClient, keys: Keys, claim: str
) -> None:
    token = mint(keys, **{claim: int(time.time()) + 3600, "exp": int(time.time()) + 7200})
    await refused(graphql, token, "TOKEN_NOT_YET_VALID", nodes)


async def test_a_token_for_another_audience_is_refused(
    graphql: Any, nodes: MockNodeClient, keys: Keys
) -> None:
    await refused(graphql, mint(keys, aud="another-gateway"), "TOKEN_WRONG_AUDIENCE", nodes)


async def test_a_token_from_an_unknown_issuer_is_refused(
    graphql: Any, nodes: MockNodeClient, keys: Keys
) -> None:
    token = mint(keys, iss="https://evil.example")
    await refused(graphql, token, "TOKEN_UNTRUSTED_ISSUER", nodes)


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub"])
async def test_a_token_missing_a_required_claim_is_refused(
    graphql: Any, nodes: MockNodeClient, keys: Keys, claim: str
) -> None:
    await refused(graphql, mint(keys, **{claim: None}), "TOKEN_MISSING_CLAIM", nodes)


async def test_a_trusted_issuers_name_with_another_key_is_refused(
    graphql: Any, nodes: MockNodeClient, keys: Keys
) -> None:
    token = mint(keys, key=Ed25519PrivateKey.generate())
    await refused(graphql, token, "TOKEN_BAD_SIGNATURE", nodes)


@pytest.mark.parametrize("typ", ["tessera-node-request+jwt", "JWE", None])
async def test_a_token_of_another_type_is_refused(
    graphql: Any, nodes: MockNodeClient, keys: Keys, typ: str | None
) -> None:
    token = handmade(
        {"alg": "EdDSA"} if typ is None else {"alg": "EdDSA", "typ": typ}, claims(), keys.hdab.sign
    )
    await refused(graphql, token, "TOKEN_WRONG_TYPE", nodes)


async def test_the_access_token_type_is_accepted(graphql: Any, keys: Keys) -> None:
    token = handmade({"alg": "EdDSA", "typ": "at+jwt"}, claims(), keys.hdab.sign)
    body = await graphql(COHORT, auth=token)
    assert body["data"]["cohort"]["count"]["value"] == 300  # the approval covers FR only


async def test_a_token_living_too_long_is_refused(
    graphql: Any, nodes: MockNodeClient, keys: Keys
) -> None:
    now = int(time.time())
    token = mint(keys, iat=now, exp=now + 30 * 24 * 3600)
    await refused(graphql, token, "TOKEN_INVALID_CLAIM", nodes)


@pytest.mark.parametrize(
    "change",
    [
        {APPROVAL_CLAIM: {"request_id": "x y"}},
        {ROLES_CLAIM: "researcher"},
        {"exp": "soon"},
        {"sub": "a\nb"},
    ],
    ids=["approval", "roles", "exp", "sub"],
)
async def test_a_token_with_a_malformed_claim_is_refused(
    graphql: Any, nodes: MockNodeClient, keys: Keys, change: dict[str, Any]
) -> None:
    body = await graphql(COHORT, auth=mint(keys, **change))
    assert body["errors"][0]["extensions"]["code"] in {"TOKEN_INVALID_CLAIM", "TOKEN_MALFORMED"}
    assert nodes.calls == []


@pytest.mark.parametrize(
    "token", ["not-a-jwt", "a.b.c", "a" * 7_000, "é.é.é", "eyJhbGciOiJFZERTQSJ9.bm90IGpzb24."]
)
async def test_garbage_is_malformed(graphql: Any, nodes: MockNodeClient, token: str) -> None:
    await refused(graphql, token, "TOKEN_MALFORMED", nodes)


@pytest.mark.parametrize("header", ["", "Basic dXNlcjpwYXNz", "Bearer", "Bearer   "])
async def test_no_bearer_token_is_unauthenticated(client: TestClient, header: str) -> None:
    response = await client.post(
        "/graphql", json={"query": COHORT}, headers={"Authorization": header}
    )
    body = await response.json()
    assert_clean_error(body, "UNAUTHENTICATED")


# -- roles ----------------------------------------------------------------------------------
ISSUERS = "{ issuers { iss algorithms keyIds keysLoaded refreshed lastRefreshError } }"


@pytest.mark.parametrize("roles", [["compliance"], ["operator"], []])
async def test_only_researchers_ask_cohorts(
    graphql: Any, nodes: MockNodeClient, keys: Keys, roles: list[str]
) -> None:
    body = await graphql(COHORT, auth=mint(keys, **{ROLES_CLAIM: roles}))
    assert_clean_error(body, "FORBIDDEN")
    assert nodes.calls == []


@pytest.mark.parametrize("role", [Role.COMPLIANCE, Role.OPERATOR])
async def test_compliance_and_operators_see_the_trusted_issuers(
    graphql: Any, keys: Keys, role: Role
) -> None:
    body = await graphql(ISSUERS, auth=mint(keys, **{ROLES_CLAIM: [role.value]}))
    assert body["data"]["issuers"] == [
        {
            "iss": ISSUER,
            "algorithms": ["EdDSA"],
            "keyIds": [],
            "keysLoaded": True,
            "refreshed": False,
            "lastRefreshError": None,
        }
    ]


async def test_researchers_do_not_see_the_trusted_issuers(graphql: Any) -> None:
    assert_clean_error(await graphql(ISSUERS), "FORBIDDEN")


async def test_the_trusted_issuers_need_a_token(graphql: Any) -> None:
    assert_clean_error(await graphql(ISSUERS, auth=None), "UNAUTHENTICATED")


# -- an issuer with a JWKS ------------------------------------------------------------------
@pytest.fixture
async def jwks_client(
    tmp_path: Path, keys: Keys, nodes: MockNodeClient
) -> AsyncIterator[TestClient]:
    path = write_federation(tmp_path, keys, issuer_keys=JWKS_ISSUER_KEYS)
    settings = GatewaySettings.from_env({}, federation=path)
    async with TestClient(TestServer(create_app(settings, node_client=nodes))) as client:
        yield client


async def post(client: TestClient, token: str, query: str = COHORT) -> dict[str, Any]:
    response = await client.post(
        "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def test_a_token_naming_its_jwks_key_is_served(jwks_client: TestClient, keys: Keys) -> None:
    body = await post(jwks_client, mint(keys, headers={"kid": HDAB_KID}))
    assert body["data"]["cohort"]["count"]["value"] == 500


async def test_an_unknown_kid_is_refused(
    jwks_client: TestClient, keys: Keys, nodes: MockNodeClient
) -> None:
    token = mint(keys, headers={"kid": "hdab-2099"})
    assert_clean_error(await post(jwks_client, token), "TOKEN_UNKNOWN_KEY", "hdab-2099")
    assert nodes.calls == []


async def test_a_known_kid_with_another_key_is_refused(jwks_client: TestClient, keys: Keys) -> None:
    token = mint(keys, key=Ed25519PrivateKey.generate(), headers={"kid": HDAB_KID})
    assert_clean_error(await post(jwks_client, token), "TOKEN_BAD_SIGNATURE")


async def test_operators_see_the_jwks_kids(jwks_client: TestClient, keys: Keys) -> None:
    token = mint(keys, headers={"kid": HDAB_KID}, **{ROLES_CLAIM: ["operator"]})
    body = await post(jwks_client, token, ISSUERS)
    [issuer] = body["data"]["issuers"]
    assert (issuer["keyIds"], issuer["keysLoaded"], issuer["refreshed"]) == ([HDAB_KID], True, True)


async def test_an_issuer_with_a_jwks_url_is_fetched_at_start(
    tmp_path: Path, keys: Keys, nodes: MockNodeClient
) -> None:
    document = json.dumps(jwks({"hdab-7": keys.hdab.public_key()})).encode()

    async def serve_jwks(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    publisher = web.Application()
    publisher.router.add_get("/.well-known/jwks.json", serve_jwks)
    async with TestServer(publisher, host="127.0.0.1") as hdab:
        url = str(hdab.make_url("/.well-known/jwks.json"))
        path = write_federation(tmp_path, keys, issuer_keys=f'jwks_url = "{url}"')
        settings = GatewaySettings.from_env({}, federation=path)
        async with TestClient(TestServer(create_app(settings, node_client=nodes))) as client:
            body = await post(client, mint(keys, headers={"kid": "hdab-7"}))
            assert body["data"]["cohort"]["count"]["value"] == 500
            ready = await (await client.get("/readyz")).json()
            assert ready["ready"] is True
