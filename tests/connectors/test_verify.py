"""The node's side of the request token (`trust.request_token`): verification and its codes,
the pinned keys, and the replay caches. The gateway's side and the round trip: tests/trust."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from redis.asyncio import Redis

from schema.errors import ErrorCode, TesseraError
from trust.keys import KeyMaterialError
from trust.replay import MemoryReplayCache, RedisReplayCache, SqliteReplayCache
from trust.request_token import (
    RequestRefused,
    RequestVerifier,
    load_verifying_key,
    load_verifying_keys,
)
from trust.store import connect_redis

Sign = Callable[..., str]
BODY = b'{"query_id": "q-0001"}'
KID, ISSUER, NODE = "gateway-2024", "tessera-gateway", "tessera-node-fr"
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def verifier(gateway_public_pem: Path) -> RequestVerifier:
    return RequestVerifier(
        keys=load_verifying_keys({KID: gateway_public_pem}), issuer=ISSUER, audience=NODE
    )


def bearer(token: str) -> str:
    return f"Bearer {token}"


async def refused(verifier: RequestVerifier, authorization: str | None, body: bytes) -> ErrorCode:
    with pytest.raises(RequestRefused) as raised:
        await verifier.verify(authorization, body)
    return raised.value.code


async def test_a_valid_token_passes(verifier: RequestVerifier, sign: Sign) -> None:
    verified = await verifier.verify(bearer(sign(BODY, jti="abc-1")), BODY)
    assert verified.kid == KID
    assert verified.jti == "abc-1"
    assert verified.expires_at - verified.issued_at == 30


@pytest.mark.parametrize(
    ("change", "code"),
    [
        pytest.param({"aud": "tessera-node-de"}, ErrorCode.WRONG_NODE, id="wrong-audience"),
        pytest.param({"aud": None}, ErrorCode.BAD_SIGNATURE, id="no-audience"),
        pytest.param({"iss": "someone-else"}, ErrorCode.BAD_SIGNATURE, id="wrong-issuer"),
        pytest.param({"issued_in": -120}, ErrorCode.REQUEST_EXPIRED, id="expired"),
        pytest.param({"issued_in": 120}, ErrorCode.REQUEST_EXPIRED, id="issued-in-the-future"),
        pytest.param({"lifetime": 61}, ErrorCode.BAD_SIGNATURE, id="too-long-lived"),
        pytest.param({"jti": None}, ErrorCode.BAD_SIGNATURE, id="no-jti"),
        pytest.param({"jti": 42}, ErrorCode.BAD_SIGNATURE, id="jti-not-a-string"),
        pytest.param({"iat": "now"}, ErrorCode.BAD_SIGNATURE, id="iat-not-a-number"),
        pytest.param({"bsh": None}, ErrorCode.BAD_SIGNATURE, id="no-body-hash"),
        pytest.param({"bsh": "0" * 64}, ErrorCode.BODY_MISMATCH, id="wrong-body-hash"),
        pytest.param({"typ": "JWT"}, ErrorCode.BAD_SIGNATURE, id="wrong-typ"),
        pytest.param({"kid": "gateway-1999"}, ErrorCode.UNKNOWN_KEY, id="unknown-kid"),
        pytest.param(
            {"key": Ed25519PrivateKey.generate()}, ErrorCode.BAD_SIGNATURE, id="other-key"
        ),
    ],
)
async def test_a_bad_token_is_refused_with_its_code(
    verifier: RequestVerifier, sign: Sign, change: dict[str, object], code: ErrorCode
) -> None:
    if "issued_in" in change:
        # Seconds from now when the test runs, not when the parameters were collected: a
        # long suite would otherwise make "the future" the past.
        change = {"issued_at": time.time() + float(change["issued_in"])}  # type: ignore[arg-type]
    assert await refused(verifier, bearer(sign(BODY, **change)), BODY) is code


async def test_a_token_just_past_expiry_is_within_the_leeway(
    verifier: RequestVerifier, sign: Sign
) -> None:
    await verifier.verify(bearer(sign(BODY, issued_at=time.time() - 33)), BODY)


async def test_a_body_altered_after_signing_is_refused(
    verifier: RequestVerifier, sign: Sign
) -> None:
    token = sign(BODY)
    code = await refused(verifier, bearer(token), BODY.replace(b"0001", b"0002"))
    assert code is ErrorCode.BODY_MISMATCH


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer not-a-jwt", "Bearer a.b.c"],
)
async def test_a_missing_or_malformed_header_is_refused(
    verifier: RequestVerifier, authorization: str | None
) -> None:
    assert await refused(verifier, authorization, BODY) is ErrorCode.BAD_SIGNATURE


async def test_only_eddsa_is_accepted(verifier: RequestVerifier) -> None:
    # A token in another algorithm is refused before any key is tried.
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": NODE, "iat": now, "exp": now + 30, "jti": "x", "bsh": "y"}
    forged = jwt.encode(
        claims,
        b"an HMAC secret of thirty-two bytes",
        algorithm="HS256",
        headers={"kid": KID, "typ": "tessera-node-request+jwt"},
    )
    with pytest.raises(RequestRefused, match="EdDSA"):
        await verifier.verify(bearer(forged), BODY)


async def test_a_replayed_token_is_refused(verifier: RequestVerifier, sign: Sign) -> None:
    token = sign(BODY)
    await verifier.verify(bearer(token), BODY)
    assert await refused(verifier, bearer(token), BODY) is ErrorCode.REPLAYED_REQUEST


async def test_a_refused_token_does_not_use_up_its_jti(
    verifier: RequestVerifier, sign: Sign
) -> None:
    token = sign(BODY)
    await refused(verifier, bearer(token), b"tampered")
    await verifier.verify(bearer(token), BODY)


async def test_rotation_two_pinned_keys_are_valid_at_once(
    tmp_path: Path, gateway_public_pem: Path, sign: Sign
) -> None:
    new_key = Ed25519PrivateKey.generate()
    new_pem = tmp_path / "new.pem"
    new_pem.write_bytes(
        new_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    keys = load_verifying_keys({KID: gateway_public_pem, "gateway-2025": new_pem})
    verifier = RequestVerifier(keys=keys, issuer=ISSUER, audience=NODE)
    await verifier.verify(bearer(sign(BODY)), BODY)
    await verifier.verify(bearer(sign(BODY, key=new_key, kid="gateway-2025")), BODY)
    # Each key only under its own kid.
    assert await refused(verifier, bearer(sign(BODY, key=new_key)), BODY) is (
        ErrorCode.BAD_SIGNATURE
    )


async def test_no_key_means_every_token_is_refused(sign: Sign) -> None:
    verifier = RequestVerifier(keys={}, issuer=ISSUER, audience=NODE)
    assert not verifier.has_keys
    assert await refused(verifier, bearer(sign(BODY)), BODY) is ErrorCode.UNKNOWN_KEY


def test_a_key_file_must_hold_an_ed25519_public_key(tmp_path: Path) -> None:
    path = tmp_path / "ec.pem"
    path.write_bytes(
        generate_private_key(SECP256R1())
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(KeyMaterialError, match="Ed25519"):
        load_verifying_key(path)


# -- replay caches ---------------------------------------------------------------------------
async def test_the_memory_cache_forgets_expired_entries() -> None:
    now = [1000.0]
    cache = MemoryReplayCache(max_entries=2, clock=lambda: now[0])
    assert await cache.claim("a", 10)
    assert not await cache.claim("a", 10)
    now[0] = 1011
    assert await cache.claim("a", 10)
    assert len(cache) == 1


async def test_a_full_memory_cache_refuses_rather_than_forgets() -> None:
    now = [1000.0]
    cache = MemoryReplayCache(max_entries=2, clock=lambda: now[0])
    assert await cache.claim("a", 50)
    assert await cache.claim("b", 10)
    with pytest.raises(TesseraError) as full:
        await cache.claim("c", 50)
    assert full.value.code is ErrorCode.TEMPORARILY_UNAVAILABLE
    now[0] = 1020  # "b" has expired although it is not first in line
    assert await cache.claim("c", 50)
    assert not await cache.claim("a", 50)


async def test_the_sqlite_cache_outlives_its_process_and_forgets_expired_entries(
    tmp_path: Path,
) -> None:
    now = [1000.0]
    path = tmp_path / "state" / "replay.sqlite3"
    cache = SqliteReplayCache(path, clock=lambda: now[0], purge_every=2)
    await cache.open()
    assert await cache.claim("node:a", 10)
    assert not await cache.claim("node:a", 10)
    assert await cache.claim("node:b", 30)
    # Not closed: a killed process closes nothing. Another one opens the same file.
    again = SqliteReplayCache(path, clock=lambda: now[0], purge_every=2)
    assert not await again.claim("node:a", 10)
    assert not await again.claim("node:b", 10)
    now[0] = 1011  # "a" has expired with its token; the purge (every 2nd claim) drops it
    assert await again.claim("node:c", 10)
    assert await again.claim("node:d", 10)
    assert await again.size() == 3  # b, c, d
    assert await again.claim("node:a", 10)
    await again.close()
    await cache.close()


async def test_tokens_issued_before_the_machine_started_are_refused(
    tmp_path: Path, gateway_public_pem: Path, sign: Sign
) -> None:
    # The machine started 10 s ago: a power cut may have lost the ids seen before.
    cache = SqliteReplayCache(tmp_path / "replay.sqlite3", started_at=lambda: time.time() - 10)
    verifier = RequestVerifier(
        keys=load_verifying_keys({KID: gateway_public_pem}),
        issuer=ISSUER,
        audience=NODE,
        replay_cache=cache,
    )
    try:
        old = bearer(sign(BODY, issued_at=time.time() - 20))  # valid for 10 s more
        assert await refused(verifier, old, BODY) is ErrorCode.REQUEST_EXPIRED
        await verifier.verify(bearer(sign(BODY, issued_at=time.time() - 5)), BODY)
    finally:
        await cache.close()


async def test_without_a_known_start_time_the_sqlite_cache_syncs_every_claim(
    tmp_path: Path,
) -> None:
    for started, synchronous in ((lambda: None, 2), (lambda: 0.0, 1)):  # FULL, NORMAL
        cache = SqliteReplayCache(tmp_path / f"{synchronous}.sqlite3", started_at=started)
        assert cache.remembers_since == started()
        assert await cache.claim("node:a", 10)
        level = await cache._file.run(lambda db: db.execute("PRAGMA synchronous").fetchone()[0])
        assert level == synchronous
        await cache.close()


async def test_concurrent_claims_of_one_id_in_the_sqlite_cache_pass_once(tmp_path: Path) -> None:
    caches = [SqliteReplayCache(tmp_path / "replay.sqlite3") for _ in range(3)]
    try:
        claims = await asyncio.gather(*(c.claim("node:same", 10) for c in caches * 4))
        assert sorted(claims) == [False] * 11 + [True]
    finally:
        for cache in caches:
            await cache.close()


async def test_an_unwritable_sqlite_cache_refuses_rather_than_accepts(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    cache = SqliteReplayCache(blocker / "replay.sqlite3")
    with pytest.raises(TesseraError) as down:
        await cache.claim("node:a", 10)
    assert down.value.code is ErrorCode.TEMPORARILY_UNAVAILABLE
    await cache.close()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = connect_redis(REDIS_URL)
    yield client
    await client.aclose()


async def test_the_redis_cache_is_shared_and_expires(redis: Redis) -> None:
    prefix = f"tessera-test-{uuid.uuid4().hex}:"
    one, two = RedisReplayCache(redis, prefix=prefix), RedisReplayCache(redis, prefix=prefix)
    try:
        assert await one.claim("node:jti-1", 0.3)
        assert not await two.claim("node:jti-1", 0.3)  # another replica has seen it
        assert await two.claim("node:jti-2", 0.3)
        await asyncio.sleep(0.4)
        assert await one.claim("node:jti-1", 0.3)  # expired with its token
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)


async def test_an_unreachable_redis_refuses_rather_than_accepts() -> None:
    client = connect_redis("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(TesseraError) as down:
            await RedisReplayCache(client, prefix="x:").claim("jti", 10)
        assert down.value.code is ErrorCode.TEMPORARILY_UNAVAILABLE
    finally:
        await client.aclose()
