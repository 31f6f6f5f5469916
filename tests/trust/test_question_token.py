"""One request token per question (`RequestSigner.sign_question`, `RequestVerifier` at each
node): every replay and substitution case of docs/request-tokens.md, each against the real
signer and verifier."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schema.errors import ErrorCode
from schema.wire import (
    BODY_HASHES_CLAIM,
    BODY_SALT_BYTES,
    QUESTION_TOKEN_MAX_NODES,
    QUESTION_TOKEN_TYP,
    REQUEST_TOKEN_TYP,
    body_hash,
    salted_body_hash,
)
from trust.replay import MemoryReplayCache, ReplayCache, SqliteReplayCache
from trust.request_token import (
    LIFETIME_S,
    QuestionCredential,
    RequestRefused,
    RequestSigner,
    RequestVerifier,
)

GATEWAY, KID = "tessera-gateway", "gateway-1"
FR, DE, DK = "tessera-node-fr", "tessera-node-de", "tessera-node-dk"
KEY = Ed25519PrivateKey.generate()
BODIES = {
    FR: b'{"query_id": "q-0001", "request_id": "DR-2026-0042-FR"}',
    DE: b'{"query_id": "q-0001", "request_id": "DR-2026-0042-DE"}',
    DK: b'{"query_id": "q-0001", "request_id": "DR-2026-0042-DK"}',
}


def signer(key: Ed25519PrivateKey = KEY, kid: str = KID, now: float | None = None) -> RequestSigner:
    return RequestSigner(
        issuer=GATEWAY, kid=kid, key=key, clock=time.time if now is None else lambda: now
    )


def node(audience: str, cache: ReplayCache | None = None) -> RequestVerifier:
    return RequestVerifier(
        keys={KID: KEY.public_key()}, issuer=GATEWAY, audience=audience, replay_cache=cache
    )


def nodes(cache: ReplayCache | None = None) -> dict[str, RequestVerifier]:
    return {n: node(n, cache) for n in BODIES}


async def refused(
    verifier: RequestVerifier, authorization: str, body: bytes, salt: str | None
) -> ErrorCode:
    with pytest.raises(RequestRefused) as raised:
        await verifier.verify(authorization, body, salt=salt)
    return raised.value.code


def claims_of(credential: QuestionCredential) -> dict[str, Any]:
    token = credential.authorization.removeprefix("Bearer ")
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def hand_signed(claims: Mapping[str, Any], typ: str = QUESTION_TOKEN_TYP) -> str:
    """A token the gateway's key signed, with whatever claims and type a test needs."""
    return "Bearer " + jwt.encode(
        dict(claims), KEY, algorithm="EdDSA", headers={"kid": KID, "typ": typ}
    )


def question_claims(**changes: Any) -> dict[str, Any]:
    issued = int(time.time())
    salt = b"s" * BODY_SALT_BYTES
    claims = {
        "iss": GATEWAY,
        "aud": [FR, DE],
        "iat": issued,
        "exp": issued + LIFETIME_S,
        "jti": uuid.uuid4().hex,
        BODY_HASHES_CLAIM: {n: salted_body_hash(salt, BODIES[n]) for n in (FR, DE)},
    }
    return {**claims, **changes}


SALT = base64.urlsafe_b64encode(b"s" * BODY_SALT_BYTES).rstrip(b"=").decode()


# -- what is signed --------------------------------------------------------------------------
def test_one_standard_jwt_covers_every_node_each_with_its_own_salted_body_hash() -> None:
    credentials = signer().sign_question(BODIES)
    assert set(credentials) == set(BODIES)
    (authorization,) = {c.authorization for c in credentials.values()}
    token = authorization.removeprefix("Bearer ")
    # pyjwt verifies what the compact encoder wrote.
    claims = jwt.decode(token, KEY.public_key(), algorithms=["EdDSA"], audience=DE, issuer=GATEWAY)
    assert jwt.get_unverified_header(token) == {
        "alg": "EdDSA",
        "kid": KID,
        "typ": QUESTION_TOKEN_TYP,
    }
    assert claims["aud"] == [FR, DE, DK]
    assert claims["exp"] - claims["iat"] == LIFETIME_S
    salts = {n: base64.urlsafe_b64decode(c.salt + "==") for n, c in credentials.items()}
    assert {len(s) for s in salts.values()} == {BODY_SALT_BYTES}
    assert len(set(salts.values())) == len(BODIES)
    assert claims[BODY_HASHES_CLAIM] == {n: salted_body_hash(salts[n], BODIES[n]) for n in BODIES}
    # No node's plain body hash is in it: a node cannot check a guess at another's body.
    assert not {body_hash(b) for b in BODIES.values()} & set(claims[BODY_HASHES_CLAIM].values())
    assert "bsh" not in claims


def test_a_node_token_is_still_a_standard_jwt_for_one_node() -> None:
    token = signer().sign(BODIES[FR], audience=FR)
    claims = jwt.decode(
        token,
        KEY.public_key(),
        algorithms=["EdDSA"],
        audience=FR,
        issuer=GATEWAY,
        options={"strict_aud": True},
    )
    assert jwt.get_unverified_header(token)["typ"] == REQUEST_TOKEN_TYP
    assert claims["bsh"] == body_hash(BODIES[FR])


def test_a_large_question_is_signed_in_groups() -> None:
    many = {
        f"tessera-node-{i:03d}": f"body {i}".encode()
        for i in range(2 * QUESTION_TOKEN_MAX_NODES + 3)
    }
    credentials = signer().sign_question(many)
    groups: dict[str, list[str]] = {}
    for n, c in credentials.items():
        groups.setdefault(c.authorization, []).append(n)
    assert sorted(len(g) for g in groups.values()) == [
        3,
        QUESTION_TOKEN_MAX_NODES,
        QUESTION_TOKEN_MAX_NODES,
    ]
    for authorization, group in groups.items():
        claims = claims_of(QuestionCredential(authorization, ""))
        assert claims["aud"] == group
    assert len({claims_of(c)["jti"] for c in credentials.values()}) == 3


# -- first use, replays ----------------------------------------------------------------------
async def test_the_first_use_at_each_node_it_names_is_accepted_once() -> None:
    credentials = signer().sign_question(BODIES)
    # One cache for all three (as one Redis shared by mistake would be): the jti is remembered
    # under each node's own id.
    verifiers = nodes(MemoryReplayCache())
    for n, c in credentials.items():
        verified = await verifiers[n].verify(c.authorization, BODIES[n], salt=c.salt)
        assert verified.jti == claims_of(c)["jti"]
    for n, c in credentials.items():
        code = await refused(verifiers[n], c.authorization, BODIES[n], c.salt)
        assert code is ErrorCode.REPLAYED_REQUEST


async def test_a_replay_after_a_restart_is_refused(tmp_path: Path) -> None:
    credentials = signer().sign_question(BODIES)
    c = credentials[FR]
    path = tmp_path / "replay.sqlite3"
    await node(FR, SqliteReplayCache(path)).verify(c.authorization, BODIES[FR], salt=c.salt)
    again = node(FR, SqliteReplayCache(path))
    assert await refused(again, c.authorization, BODIES[FR], c.salt) is ErrorCode.REPLAYED_REQUEST


async def test_a_token_issued_before_the_node_started_is_refused(tmp_path: Path) -> None:
    c = signer(now=time.time() - 20).sign_question(BODIES)[FR]
    cache = SqliteReplayCache(tmp_path / "replay.sqlite3", started_at=lambda: time.time() - 10)
    code = await refused(node(FR, cache), c.authorization, BODIES[FR], c.salt)
    assert code is ErrorCode.REQUEST_EXPIRED


async def test_an_expired_question_token_is_refused() -> None:
    c = signer(now=time.time() - LIFETIME_S - 10).sign_question(BODIES)[FR]
    assert await refused(node(FR), c.authorization, BODIES[FR], c.salt) is ErrorCode.REQUEST_EXPIRED


# -- substitution ----------------------------------------------------------------------------
async def test_a_node_it_does_not_name_refuses_it() -> None:
    credentials = signer().sign_question({FR: BODIES[FR], DE: BODIES[DE]})
    c = credentials[FR]
    assert await refused(node(DK), c.authorization, BODIES[FR], c.salt) is ErrorCode.WRONG_NODE


async def test_a_body_moved_to_another_node_is_refused_and_spends_nothing() -> None:
    credentials = signer().sign_question(BODIES)
    fr, de = credentials[FR], credentials[DE]
    verifiers = nodes()
    # FR forwards its own request to DE (its body, its salt): DE sees it is FR's.
    code = await refused(verifiers[DE], fr.authorization, BODIES[FR], fr.salt)
    assert code is ErrorCode.WRONG_NODE
    # FR's body with DE's salt, DE's body under FR's salt: DE's entry matches neither.
    for body, salt in ((BODIES[FR], de.salt), (BODIES[DE], fr.salt)):
        code = await refused(verifiers[DE], fr.authorization, body, salt)
        assert code is ErrorCode.BODY_MISMATCH
    # None of those took DE's use of the token: the gateway's own request still passes.
    await verifiers[DE].verify(de.authorization, BODIES[DE], salt=de.salt)


@pytest.mark.parametrize("salt", [None, "", "not-base64!", "c2hvcnQ", SALT + "AAAA"])
async def test_a_missing_or_malformed_salt_is_refused(salt: str | None) -> None:
    c = signer().sign_question(BODIES)[FR]
    assert await refused(node(FR), c.authorization, BODIES[FR], salt) is ErrorCode.BODY_MISMATCH


async def test_a_tampered_audience_or_hash_map_breaks_the_signature() -> None:
    c = signer().sign_question({FR: BODIES[FR], DE: BODIES[DE]})[FR]
    header, _, signature = c.authorization.removeprefix("Bearer ").split(".")
    claims = claims_of(c)
    for changed in (
        {**claims, "aud": [FR, DE, DK]},
        {**claims, BODY_HASHES_CLAIM: {**claims[BODY_HASHES_CLAIM], DK: "x"}, "aud": [FR, DE, DK]},
        {
            **claims,
            BODY_HASHES_CLAIM: {
                **claims[BODY_HASHES_CLAIM],
                FR: salted_body_hash(b"s" * 16, BODIES[FR]),
            },
        },
    ):
        forged = base64.urlsafe_b64encode(orjson.dumps(changed)).rstrip(b"=").decode()
        authorization = f"Bearer {header}.{forged}.{signature}"
        verifier = node(DK) if DK in changed["aud"] else node(FR)
        code = await refused(verifier, authorization, BODIES[FR], SALT)
        assert code is ErrorCode.BAD_SIGNATURE


async def test_the_type_in_the_signed_header_cannot_be_swapped() -> None:
    c = signer().sign_question(BODIES)[FR]
    _, payload, signature = c.authorization.removeprefix("Bearer ").split(".")
    as_request = (
        base64.urlsafe_b64encode(
            orjson.dumps({"alg": "EdDSA", "kid": KID, "typ": REQUEST_TOKEN_TYP})
        )
        .rstrip(b"=")
        .decode()
    )
    code = await refused(node(FR), f"Bearer {as_request}.{payload}.{signature}", BODIES[FR], c.salt)
    assert code is ErrorCode.BAD_SIGNATURE


async def test_each_type_must_carry_its_own_claims() -> None:
    # A node's own token naming several nodes is not one (pyjwt's strict audience).
    listed = hand_signed(
        {**question_claims(), "aud": [FR, DE], "bsh": body_hash(BODIES[FR])}, REQUEST_TOKEN_TYP
    )
    assert await refused(node(FR), listed, BODIES[FR], None) is ErrorCode.WRONG_NODE
    # A question token with a node's single body hash (and no map) lacks its claim.
    single = question_claims(bsh=body_hash(BODIES[FR]))
    del single[BODY_HASHES_CLAIM]
    assert await refused(node(FR), hand_signed(single), BODIES[FR], SALT) is ErrorCode.BAD_SIGNATURE
    # A question token names its nodes as a list, each once, the same as its map.
    for claims in (
        question_claims(aud=FR, **{BODY_HASHES_CLAIM: question_claims()[BODY_HASHES_CLAIM]}),
        question_claims(aud=[FR, FR, DE]),
        question_claims(aud=[FR]),
        question_claims(aud=[FR, DE, DK]),
        question_claims(**{BODY_HASHES_CLAIM: [salted_body_hash(b"s" * 16, BODIES[FR])]}),
        question_claims(**{BODY_HASHES_CLAIM: {FR: 1, DE: 2}}),
    ):
        assert (
            await refused(node(FR), hand_signed(claims), BODIES[FR], SALT)
            is ErrorCode.BAD_SIGNATURE
        )
    # ... and at most QUESTION_TOKEN_MAX_NODES of them.
    crowd = [f"tessera-node-{i:03d}" for i in range(QUESTION_TOKEN_MAX_NODES)] + [FR]
    too_many = question_claims(aud=crowd, **{BODY_HASHES_CLAIM: dict.fromkeys(crowd, "x")})
    assert (
        await refused(node(FR), hand_signed(too_many), BODIES[FR], SALT) is ErrorCode.BAD_SIGNATURE
    )
    # The hand-signed form itself passes, so each refusal above is the claim's.
    await node(FR).verify(hand_signed(question_claims()), BODIES[FR], salt=SALT)


async def test_a_question_token_lives_no_longer_than_a_node_token() -> None:
    issued = int(time.time())
    long = hand_signed(question_claims(iat=issued, exp=issued + 120))
    assert await refused(node(FR), long, BODIES[FR], SALT) is ErrorCode.BAD_SIGNATURE


async def test_an_unknown_key_or_another_key_is_refused() -> None:
    rotated = signer(kid="gateway-2").sign_question(BODIES)[FR]
    code = await refused(node(FR), rotated.authorization, BODIES[FR], rotated.salt)
    assert code is ErrorCode.UNKNOWN_KEY
    stranger = signer(key=Ed25519PrivateKey.generate()).sign_question(BODIES)[FR]
    code = await refused(node(FR), stranger.authorization, BODIES[FR], stranger.salt)
    assert code is ErrorCode.BAD_SIGNATURE
