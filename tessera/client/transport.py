"""How the client reaches a gateway: one POST of a GraphQL body. Behind two small protocols
(blocking and async) so that the client's logic runs the same over the stdlib's
`http.client` (no event loop: works in a notebook whose loop is already running), over
aiohttp, or over `FakeTransport` in tests.

Connection failures are mapped here, once, to `Unavailable` with no code (no gateway
answered); the body of any HTTP answer goes back to the client, which reads the gateway's
own stable code from it."""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from tessera.client.errors import Unavailable

Headers = Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes


class Transport(Protocol):
    def post(self, url: str, body: bytes, headers: Headers, timeout_s: float) -> Reply: ...


class AsyncTransport(Protocol):
    async def post(self, url: str, body: bytes, headers: Headers, timeout_s: float) -> Reply: ...

    async def close(self) -> None: ...


def _unreachable(url: str, exc: BaseException) -> Unavailable:
    # The exception's type says what happened; its text may quote the URL's credentials.
    return Unavailable(f"no answer from the gateway at {_origin(url)} ({type(exc).__name__})")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}".rstrip(":")


class HttpClientTransport:
    """Blocking, over `http.client`: a header may repeat (one `X-Tessera-Permit` line per
    permit). A new connection per question: questions take seconds, connecting microseconds."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context

    def post(self, url: str, body: bytes, headers: Headers, timeout_s: float) -> Reply:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Unavailable(f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname,
                parts.port,
                timeout=timeout_s,
                context=self._ssl or ssl.create_default_context(),
            )
        else:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            connection.putrequest("POST", path)
            for name, value in [
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
                *headers,
                ("Content-Length", str(len(body))),
            ]:
                connection.putheader(name, value)
            connection.endheaders(body)
            response = connection.getresponse()
            return Reply(response.status, response.read())
        except (OSError, http.client.HTTPException) as exc:
            raise _unreachable(url, exc) from None
        finally:
            connection.close()


class AiohttpTransport:
    """Async, over one aiohttp session (made on first use, closed by `close`)."""

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session
        self._owned = session is None

    async def post(self, url: str, body: bytes, headers: Headers, timeout_s: float) -> Reply:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        sent = [("Content-Type", "application/json"), ("Accept", "application/json"), *headers]
        try:
            async with self._session.post(
                url, data=body, headers=sent, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                return Reply(response.status, await response.read())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _unreachable(url, exc) from None

    async def close(self) -> None:
        if self._session is not None and self._owned:
            await self._session.close()
        self._session = None


@dataclass
class FakeTransport:
    """A gateway in memory, for tests of code that uses the client: `answer(url, body,
    headers)` returns the reply. Records every request in `requests`; `asynchronous()` serves
    an `AsyncClient`."""

    answer: Callable[[str, bytes, Headers], Reply]
    requests: list[tuple[str, bytes, Headers]] = field(default_factory=list)

    def post(self, url: str, body: bytes, headers: Headers, timeout_s: float) -> Reply:
        self.requests.append((url, body, list(headers)))
        return self.answer(url, body, headers)

    def asynchronous(self) -> AsyncTransport:
        return _AsyncFake(self)


@dataclass
class _AsyncFake:
    fake: FakeTransport

    async def post(self, url: str, body: bytes, headers: Headers, timeout_s: float) -> Reply:
        return self.fake.post(url, body, headers, timeout_s)

    async def close(self) -> None:
        return None
