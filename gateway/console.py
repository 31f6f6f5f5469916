"""The query console: a page for researchers to ask the gateway questions from a browser.

Served from files installed with the package (`gateway/assets`), never from another origin,
so it works on an offline or locked-down network. Every console response carries a strict
Content-Security-Policy: scripts, styles and requests from the gateway's own origin only.

Routes (when `TESSERA_GATEWAY_CONSOLE` is on):

- `GET /console` and `GET /graphql` (a browser opening the endpoint): the page;
- `GET /console/{asset}`: its script, style sheet and icon;
- `GET /console/demo-credentials.json`: `{"demo": false}`, unless the gateway runs as the
  demo (`TESSERA_GATEWAY_CONSOLE_DEMO_CREDENTIALS`, loopback only): then the demo
  researcher's identity token and permits, which the page pre-fills. Otherwise the researcher
  pastes theirs or loads the files; the page keeps them in the tab's sessionStorage only, and
  the gateway never puts a token into a page.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

import orjson
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from gateway.http import error_response
from gateway.settings import is_loopback
from schema.errors import ErrorCode

CONSOLE_PATH: Final = "/console"
DEMO_CREDENTIALS_PATH: Final = f"{CONSOLE_PATH}/demo-credentials.json"
# The demo's layout (`tessera demo`): the identity token, and one permit per country.
DEMO_IDENTITY_FILE: Final = "researcher.jwt"
DEMO_PERMITS_GLOB: Final = "permits/*.jwt"

CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
    ]
)
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    # A new version of the package must not meet a stale script in a browser's cache.
    hdrs.CACHE_CONTROL: "no-cache",
}
_PAGE: Final = "console.html"
_ASSETS: Final = {
    "console.js": "text/javascript",
    "console.css": "text/css",
    "icon.svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    content_type: str

    def response(self) -> web.Response:
        return web.Response(
            body=self.body,
            content_type=self.content_type,
            charset="utf-8" if self.content_type.startswith("text/") else None,
            headers=_SECURITY_HEADERS,
        )


def _load_assets() -> dict[str, _Asset]:
    folder = resources.files("gateway") / "assets"
    names = {_PAGE: "text/html", **_ASSETS}
    return {name: _Asset(folder.joinpath(name).read_bytes(), kind) for name, kind in names.items()}


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    """The demo researcher's tokens, read from the directory `tessera demo` writes."""

    directory: Path

    def read(self) -> dict[str, object] | None:
        token = self.directory / DEMO_IDENTITY_FILE
        if not token.is_file():
            return None
        permits = sorted(self.directory.glob(DEMO_PERMITS_GLOB))
        return {
            "demo": True,
            "bearer": token.read_text().strip(),
            "permits": [path.read_text().strip() for path in permits],
            "source": "the demo's researcher.jwt and permits/*.jwt",
        }


def install_console(
    app: web.Application, *, graphql_path: str, demo_credentials: Path | None = None
) -> None:
    """Serve the console on `app`: the page at `/console` and on `GET graphql_path`, its
    assets, and, for the demo only, the demo's credentials. Reads the assets now, so a broken
    installation fails at start, not in a researcher's browser."""
    assets = _load_assets()

    async def page(request: web.Request) -> web.Response:
        return assets[_PAGE].response()

    async def asset(request: web.Request) -> web.Response:
        found = assets.get(request.match_info["name"])
        if found is None or request.match_info["name"] == _PAGE:
            return error_response(404, ErrorCode.NOT_FOUND, "Not Found")
        return found.response()

    app.router.add_get(graphql_path, page)
    app.router.add_get(CONSOLE_PATH, page)
    demo = None if demo_credentials is None else DemoCredentials(demo_credentials)
    app.router.add_get(DEMO_CREDENTIALS_PATH, _credentials(demo))
    app.router.add_get(CONSOLE_PATH + "/{name}", asset)


def _credentials(demo: DemoCredentials | None) -> Handler:
    # Answered even where there is no demo, so that the page asks without a failed request.
    async def handler(request: web.Request) -> web.Response:
        found: dict[str, object] | None = {"demo": False}
        # The settings keep a demo gateway on loopback; a page of another site that rebinds
        # its own name to 127.0.0.1 still sends that name as Host, and gets nothing.
        if demo is not None and is_loopback(request.url.host or ""):
            found = await asyncio.to_thread(demo.read)
        if found is None:
            return error_response(
                503, ErrorCode.TEMPORARILY_UNAVAILABLE, "the demo's credentials are not written"
            )
        return web.Response(
            body=orjson.dumps(found),
            content_type="application/json",
            headers={**_SECURITY_HEADERS, hdrs.CACHE_CONTROL: "no-store"},
        )

    return handler
