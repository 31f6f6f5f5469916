"""Where verification keys come from: a fixed set (PEM files), or a JWKS re-read in the
background from a file or an HTTPS URL.

A token is verified with the keys in memory: no request ever waits on a key fetch. A refresh
replaces the set whole, so a key the publisher removed stops being trusted at the next
refresh; a failed refresh keeps the last good set for at most `max_stale_s`, after which
the source holds no key and every token is refused (fail closed). An unknown `kid` asks for
an early refresh (at most one per `min_refresh_s`), which is how a new key of a rotation is
picked up before the next scheduled refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import urlsplit

import aiohttp

from trust.keys import MAX_JWKS_BYTES, Algorithm, KeyMaterialError, KeySet, parse_jwks

log = logging.getLogger(__name__)

DEFAULT_REFRESH_S: Final = 300.0
MIN_REFRESH_S: Final = 30.0
DEFAULT_MAX_STALE_S: Final = 24 * 3600.0
FETCH_TIMEOUT_S: Final = 5.0
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d{1,9})\s*(?:,|$)", re.IGNORECASE)


class KeySource(Protocol):
    def key_set(self) -> KeySet:
        """The keys to verify with now; never does I/O."""
        ...

    def request_refresh(self) -> None:
        """A token named a key this source does not hold: refresh soon if that is allowed."""
        ...


class StaticKeys:
    """Keys fixed at start-up (PEM public keys)."""

    def __init__(self, keys: KeySet) -> None:
        self._keys = keys

    def key_set(self) -> KeySet:
        return self._keys

    def request_refresh(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Fetched:
    data: bytes
    # How long the publisher says the document stays current (HTTP Cache-Control max-age).
    max_age_s: float | None = None


Fetch = Callable[[], Awaitable[Fetched]]


class FetchError(Exception):
    """A key set could not be fetched; the message is safe to log."""


def check_jwks_url(url: str) -> str:
    """HTTPS, or HTTP on loopback only (development): keys fetched in clear over a network
    could be swapped by anyone on the path."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("must be an absolute URL")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return url
    raise ValueError("must be https (http only on loopback)")


def http_fetch(url: str, *, timeout_s: float = FETCH_TIMEOUT_S) -> Fetch:
    check_jwks_url(url)

    async def fetch() -> Fetched:
        try:
            async with (
                aiohttp.ClientSession(trust_env=False) as session,
                session.get(
                    url,
                    timeout=aiohttp.ClientTimeout(total=timeout_s),
                    allow_redirects=False,
                    headers={"Accept": "application/json"},
                ) as response,
            ):
                if response.status != 200:
                    raise FetchError(f"HTTP {response.status}")
                if (response.content_length or 0) > MAX_JWKS_BYTES:
                    raise FetchError("the key set is too large")
                data = await response.content.read(MAX_JWKS_BYTES + 1)
                return Fetched(data, _max_age(response.headers.get("Cache-Control")))
        except (aiohttp.ClientError, TimeoutError) as e:
            raise FetchError(type(e).__name__) from None

    return fetch


def file_fetch(path: Path) -> Fetch:
    async def fetch() -> Fetched:
        try:
            return Fetched(await asyncio.to_thread(path.read_bytes))
        except OSError as e:
            raise FetchError(e.strerror or type(e).__name__) from None

    return fetch


def _max_age(cache_control: str | None) -> float | None:
    match = _MAX_AGE.search(cache_control or "")
    return float(match.group(1)) if match else None


class RefreshingKeys:
    """A JWKS kept current by a background task (see the module docstring)."""

    def __init__(
        self,
        fetch: Fetch,
        allowed: Sequence[Algorithm],
        *,
        name: str,
        refresh_s: float = DEFAULT_REFRESH_S,
        min_refresh_s: float = MIN_REFRESH_S,
        max_stale_s: float = DEFAULT_MAX_STALE_S,
        initial: KeySet | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < min_refresh_s <= refresh_s <= max_stale_s:
            raise ValueError("need 0 < min_refresh_s <= refresh_s <= max_stale_s")
        self.name = name
        self._fetch = fetch
        self._allowed = tuple(allowed)
        self._refresh_s = refresh_s
        self._min_refresh_s = min_refresh_s
        self._max_stale_s = max_stale_s
        self._clock = clock
        self._keys = initial or KeySet()
        self._loaded_at: float | None = clock() if initial else None
        self._attempted_at: float | None = None
        self.last_error: str | None = None
        self._next_s = refresh_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def next_refresh_s(self) -> float:
        """Seconds between regular refreshes (the publisher's max-age, within bounds)."""
        return self._next_s

    def key_set(self) -> KeySet:
        if self._loaded_at is None or self._clock() - self._loaded_at > self._max_stale_s:
            return KeySet()
        return self._keys

    def request_refresh(self) -> None:
        if self._attempted_at is None or self._clock() - self._attempted_at >= self._min_refresh_s:
            self._wake.set()

    async def refresh(self) -> bool:
        """Fetch and replace the key set now; False (keeping the old set) when that fails."""
        self._attempted_at = self._clock()
        try:
            fetched = await self._fetch()
            keys = parse_jwks(fetched.data, self._allowed)
        except (FetchError, KeyMaterialError) as e:
            self.last_error = str(e)
            log.warning("key set %s: refresh failed: %s", self.name, e)
            return False
        if keys.kids != self._keys.kids:
            log.info("key set %s: now trusting %s", self.name, ", ".join(keys.kids))
        self._keys, self._loaded_at, self.last_error = keys, self._clock(), None
        if fetched.max_age_s is not None:
            self._next_s = min(max(fetched.max_age_s, self._min_refresh_s), self._refresh_s)
        return True

    async def start(self) -> None:
        """Load once (the caller's start-up waits for that attempt), then keep refreshing."""
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name=f"refresh {self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            # After a failure, retry sooner than the regular interval.
            delay = self._next_s if self.last_error is None else self._min_refresh_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()
            await self.refresh()


class CombinedKeys:
    """Several sources trusted at once (e.g. pinned PEM keys and a JWKS file)."""

    def __init__(self, sources: Sequence[KeySource]) -> None:
        self._sources = tuple(sources)

    def key_set(self) -> KeySet:
        return KeySet(tuple(k for source in self._sources for k in source.key_set().keys))

    def request_refresh(self) -> None:
        for source in self._sources:
            source.request_refresh()
