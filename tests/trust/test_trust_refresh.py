"""Key sets re-read in the background, from a file or over HTTP (a real loopback server):
verification never waits on a fetch, a rotation is picked up, a failure keeps the last good
set for a bounded time, and then nothing is trusted."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schema.errors import ErrorCode, TesseraError
from trust.keys import jwks
from trust.keysource import Fetched, FetchError, RefreshingKeys, file_fetch, http_fetch
from trust.tokens import TokenVerifier, TrustedIssuer

OLD, NEW = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
ISS, AUD = "https://hdab.test", "tessera-gateway"


def token(key: Ed25519PrivateKey, kid: str) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": "r", "iat": now, "exp": now + 60}
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid, "typ": "JWT"})


def document(**keys: Ed25519PrivateKey) -> bytes:
    return json.dumps(jwks({kid: k.public_key() for kid, k in keys.items()})).encode()


class Publisher:
    """An HDAB's JWKS endpoint on loopback: what it serves can change, fail or hang."""

    def __init__(self) -> None:
        self.body = document(old=OLD)
        self.status = 200
        self.cache_control = "max-age=3600"
        self.hang = asyncio.Event()
        self.hang.set()
        self.requests = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        await self.hang.wait()
        return web.Response(
            body=self.body,
            status=self.status,
            content_type="application/json",
            headers={"Cache-Control": self.cache_control},
        )


@pytest.fixture
async def publisher() -> AsyncIterator[tuple[Publisher, str]]:
    publisher = Publisher()
    app = web.Application()
    app.router.add_get("/jwks.json", publisher.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield publisher, str(server.make_url("/jwks.json"))
    publisher.hang.set()
    await server.close()


def verifier(source: RefreshingKeys) -> TokenVerifier:
    return TokenVerifier(
        audience=AUD, issuers=[TrustedIssuer(iss=ISS, keys=source, algorithms=("EdDSA",))]
    )


def code_of(verify: TokenVerifier, tok: str) -> ErrorCode | None:
    try:
        verify.verify(tok)
    except TesseraError as e:
        return e.code
    return None


async def wait_for(condition: Any, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_rotation_at_the_publisher_is_picked_up_early(
    publisher: tuple[Publisher, str],
) -> None:
    server, url = publisher
    source = RefreshingKeys(
        http_fetch(url), ("EdDSA",), name="hdab", refresh_s=3600, min_refresh_s=0.05
    )
    await source.start()
    try:
        check = verifier(source)
        assert code_of(check, token(OLD, "old")) is None
        server.body = document(new=NEW, old=OLD)  # the HDAB rotates: new key first
        await asyncio.sleep(0.06)
        # Unknown now: refused at once, and the source is asked to refresh in the background.
        assert code_of(check, token(NEW, "new")) is ErrorCode.TOKEN_UNKNOWN_KEY
        await wait_for(lambda: "new" in source.key_set().kids)
        assert code_of(check, token(NEW, "new")) is None
        assert code_of(check, token(OLD, "old")) is None  # still in the set
        server.body = document(new=NEW)  # the old key retires
        await asyncio.sleep(0.06)
        source.request_refresh()
        await wait_for(lambda: source.key_set().kids == ("new",))
        assert code_of(check, token(OLD, "old")) is ErrorCode.TOKEN_UNKNOWN_KEY
    finally:
        await source.stop()


async def test_verification_never_waits_on_a_fetch(publisher: tuple[Publisher, str]) -> None:
    server, url = publisher
    source = RefreshingKeys(
        http_fetch(url), ("EdDSA",), name="hdab", refresh_s=3600, min_refresh_s=0.05
    )
    await source.start()
    try:
        server.hang.clear()  # the publisher stops answering
        await asyncio.sleep(0.06)
        check = verifier(source)
        started = time.perf_counter()
        assert code_of(check, token(NEW, "new")) is ErrorCode.TOKEN_UNKNOWN_KEY
        assert code_of(check, token(OLD, "old")) is None
        assert time.perf_counter() - started < 0.5  # the hung fetch is not waited for
        await wait_for(lambda: server.requests == 2)  # the refresh did start
    finally:
        server.hang.set()
        await source.stop()


async def test_a_failed_refresh_keeps_the_last_good_set(publisher: tuple[Publisher, str]) -> None:
    server, url = publisher
    source = RefreshingKeys(http_fetch(url), ("EdDSA",), name="hdab", min_refresh_s=0.05)
    await source.start()
    try:
        for status, body in ((500, document(old=OLD)), (200, b"{not json")):
            server.status, server.body = status, body
            assert not await source.refresh()
            assert source.key_set().kids == ("old",)
            assert source.last_error is not None
            assert "not json" not in source.last_error
        server.status, server.body = 200, document(old=OLD)
        assert await source.refresh()
        assert source.last_error is None
    finally:
        await source.stop()


async def test_past_the_staleness_bound_nothing_is_trusted() -> None:
    now = [0.0]
    answers: list[Fetched | None] = [Fetched(document(old=OLD))]

    async def fetch() -> Fetched:
        answer = answers[0]
        if answer is None:
            raise FetchError("down")
        return answer

    source = RefreshingKeys(
        fetch, ("EdDSA",), name="x", refresh_s=60, max_stale_s=600, clock=lambda: now[0]
    )
    assert await source.refresh()
    answers[0] = None
    now[0] = 599
    assert not await source.refresh()
    assert source.key_set().kids == ("old",)
    now[0] = 601
    assert not source.key_set()
    assert code_of(verifier(source), token(OLD, "old")) is ErrorCode.TOKEN_UNKNOWN_KEY


async def test_the_publishers_max_age_sets_the_next_refresh(
    publisher: tuple[Publisher, str],
) -> None:
    server, url = publisher
    server.cache_control = "public, max-age=90"
    source = RefreshingKeys(http_fetch(url), ("EdDSA",), name="hdab", refresh_s=300)
    assert await source.refresh()
    assert source.next_refresh_s == 90
    server.cache_control = "max-age=1"  # never more often than min_refresh_s
    assert await source.refresh()
    assert source.next_refresh_s == 30


async def test_a_file_is_re_read(tmp_path: Path) -> None:
    path = tmp_path / "hdab.jwks.json"
    path.write_bytes(document(old=OLD))
    source = RefreshingKeys(file_fetch(path), ("EdDSA",), name="file", min_refresh_s=0.05)
    assert await source.refresh()
    path.write_bytes(document(new=NEW))
    assert await source.refresh()
    assert source.key_set().kids == ("new",)
    path.unlink()
    assert not await source.refresh()
    assert source.key_set().kids == ("new",)


@pytest.mark.parametrize(
    "url", ["http://hdab.example/jwks.json", "ftp://127.0.0.1/jwks", "/jwks.json"]
)
def test_keys_are_fetched_over_https_only_off_loopback(url: str) -> None:
    with pytest.raises(ValueError, match=r"https|absolute"):
        http_fetch(url)
