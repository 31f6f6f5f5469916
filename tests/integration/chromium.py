"""Headless Chromium driven over the Chrome DevTools protocol, with no network but loopback.

Debian's `chromium` package is installed with apt-get when it is missing (as root, or with
`sudo -n`); the protocol is spoken over a WebSocket with aiohttp, so no driver binary and no
Python package beyond the project's own are needed. The browser resolves no name but
127.0.0.1 (`--host-resolver-rules`) and sends anything that is not loopback to a proxy on a
port nobody listens on, so a page that needs the internet stays broken here, as it would on
a locked-down network.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tessera.processes import free_port

PACKAGES = ("chromium",)
BINARIES = ("chromium", "chromium-browser")


class ChromiumUnavailable(Exception):
    """Chromium is not installed and cannot be on this machine (no apt-get, no root)."""


def chromium_binary() -> str:
    """The Chromium binary, installed from Debian's packages first if need be. Raises
    ChromiumUnavailable only when it cannot be installed at all; a failing installation
    raises RuntimeError."""
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise ChromiumUnavailable("no chromium and no apt-get to install it")
    prefix: list[str] = []
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        if sudo is None or subprocess.run([sudo, "-n", "true"], check=False).returncode:
            raise ChromiumUnavailable("no chromium, and apt-get needs root")
        prefix = [sudo, "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    for command in (
        [*prefix, apt, "update", "-q", *lock],
        [*prefix, apt, "install", "-y", "-q", "--no-install-recommends", *lock, *PACKAGES],
    ):
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr}")
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(f"apt-get installed {' '.join(PACKAGES)}, but no chromium binary is found")


@dataclass
class Page:
    """One browser tab: commands, and the events seen so far."""

    ws: aiohttp.ClientWebSocketResponse
    events: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            waiting = self._pending.pop(data["id"], None) if "id" in data else None
            if waiting is None:
                self.events.append(data)
            elif "error" in data:
                waiting.set_exception(RuntimeError(f"DevTools: {data['error']}"))
            else:
                waiting.set_result(data.get("result", {}))
        for waiting in self._pending.values():
            waiting.set_exception(RuntimeError("the browser closed the connection"))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        await self.ws.send_str(json.dumps({"id": message_id, "method": method, "params": params}))
        return await asyncio.wait_for(future, 30)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_until(self, expression: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not await self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout_s:.0f} s: {expression}")
            await asyncio.sleep(0.1)

    def seen(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.events if e.get("method") == method]

    async def screenshot(self) -> bytes:
        """The whole page as a PNG."""
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return base64.b64decode(shot["data"])


def _arguments(profile: Path, dead_proxy_port: int) -> list[str]:
    return [
        "--headless",
        # Chromium's sandbox needs user namespaces, which a root CI container may lack.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--window-size=1280,1600",
        # No name resolves but 127.0.0.1, and anything else goes to a proxy that is not there.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--proxy-server=http://127.0.0.1:{dead_proxy_port}",
        "about:blank",
    ]


@contextlib.contextmanager
def running_chromium(binary: str, profile: Path) -> Iterator[int]:
    """A headless Chromium with a fresh profile in `profile`; yields its DevTools port."""
    profile.mkdir(parents=True, exist_ok=True)
    with (profile / "chromium.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, *_arguments(profile, free_port())],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            yield _devtools_port(profile, process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _devtools_port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((profile / "DevToolsActivePort").read_text().splitlines()[0])
        if process.poll() is not None:
            log = (profile / "chromium.log").read_text(errors="replace")
            raise RuntimeError(f"chromium exited with {process.returncode}:\n{log[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError("chromium opened no DevTools port within 60 s")
        time.sleep(0.1)


@contextlib.asynccontextmanager
async def open_page(devtools_port: int) -> AsyncIterator[Page]:
    """A new tab of the Chromium listening on `devtools_port`."""
    base = f"http://127.0.0.1:{devtools_port}"
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{base}/json/new?about:blank") as response:
            target = await response.json(content_type=None)
        async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            page = Page(ws)
            page.start()
            yield page
