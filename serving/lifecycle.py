"""Liveness, readiness and shutdown of a Tessera service, the gateway's and a connector's
alike.

- `GET /healthz`: the process serves HTTP (nothing else is checked: a failing dependency must
  not get a live process restarted).
- `GET /readyz`: one shape for every service,
  `{"ready": bool, "problems": {check: why}, "checks": [...], "details": {...}, ...}`: 200
  when every readiness check passes and the process is not draining, else 503 with each
  failing check's reason under `problems`. Either way the body carries `details` (e.g. which
  policy is in force, and why its last reload failed: the service stays ready on the previous
  one) and the service's own fields (a node's `identity`, which the gateway and `tessera
  federation check` compare with the federation file). Each part of a service that must be
  up before it answers registers a check (`Lifecycle.add_check`).
- Shutdown (SIGTERM or SIGINT, `serving.run`): the listening socket is closed first (no new
  connections), idle keep-alive connections are closed, `/readyz` turns 503 (`problems`:
  `lifecycle: shutting down`), in-flight requests get up to the shutdown timeout to finish,
  and only then are the cleanup contexts torn down, in reverse order of registration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import TracerProvider

from schema.wire import HEALTH_PATH, READY_PATH

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns None when ready, or why not (safe to show: no secret, path or value)."""
Detail = Callable[[], Mapping[str, object]]
"""What /readyz reports besides readiness (safe to show, like a check's reason)."""
Field = Callable[[], object]
"""A service's own entry of /readyz, ready or not (JSON-ready, safe to show)."""
CleanupContext = Callable[[web.Application], AsyncIterator[None]]


@dataclass
class Lifecycle:
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    details: dict[str, Detail] = field(default_factory=dict)
    fields: dict[str, Field] = field(default_factory=dict)
    draining: bool = False

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        if name in self.checks:
            raise ValueError(f"readiness check {name!r} is registered twice")
        self.checks[name] = _joined(check)

    def add_detail(self, name: str, detail: Detail) -> None:
        if name in self.details:
            raise ValueError(f"readiness detail {name!r} is registered twice")
        self.details[name] = detail

    def add_field(self, name: str, value: Field) -> None:
        if name in self.fields or name in _SHAPE:
            raise ValueError(f"readiness field {name!r} is registered twice")
        self.fields[name] = value

    def described(self) -> dict[str, dict[str, object]]:
        return {name: dict(detail()) for name, detail in self.details.items()}

    async def problems(self) -> dict[str, str]:
        found: dict[str, str] = {}
        if self.draining:
            found["lifecycle"] = "shutting down"
        for name, check in self.checks.items():
            try:
                reason = await check()
            except Exception as e:  # a failing check means not ready, never a 500
                log.warning("readiness check %s failed with %s", name, type(e).__name__)
                reason = f"check failed ({type(e).__name__})"
            if reason is not None:
                found[name] = reason
        return found

    async def readiness(self) -> dict[str, object]:
        """The body of /readyz."""
        problems = await self.problems()
        return {
            "ready": not problems,
            "problems": problems,
            "checks": sorted(self.checks),
            "details": self.described(),
            **{name: value() for name, value in self.fields.items()},
        }


def _joined(check: ReadinessCheck) -> ReadinessCheck:
    """`check`, run once for every /readyz that asks while it runs. A check may outlast a
    prober's timeout (a node on Spark pings with a job per statement: seconds on a busy
    machine): the prober gives up and asks again, and a run per request would queue each
    behind the last on the engine's workers, every one slower, none within the timeout, so
    the node would never be seen ready. Joined, the next request gets the running check's
    answer as soon as it has one; a request that gives up does not stop it."""
    running: asyncio.Future[str | None] | None = None

    async def joined() -> str | None:
        nonlocal running
        if running is None or running.done():
            running = asyncio.ensure_future(check())
            running.add_done_callback(_retrieved)
        return await asyncio.shield(running)

    return joined


def _retrieved(done: asyncio.Future[str | None]) -> None:
    # Read once here: a check whose every asker gave up must not warn of an exception never
    # retrieved (the next asker runs it again).
    if not done.cancelled():
        done.exception()


_SHAPE: Final = frozenset({"ready", "problems", "checks", "details"})
LIFECYCLE: Final = web.AppKey("tessera.serving.lifecycle", Lifecycle)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    body = await request.app[LIFECYCLE].readiness()
    return web.json_response(body, status=200 if body["ready"] else 503)


async def start_draining(app: web.Application) -> None:
    """`on_shutdown`: runs after the listening socket is closed, before in-flight requests
    are waited for."""
    app[LIFECYCLE].draining = True
    log.info("shutting down: no new connections; draining in-flight queries")


def install(app: web.Application) -> Lifecycle:
    """`/healthz`, `/readyz` and draining on shutdown, for `app`; checks are added to the
    `Lifecycle` returned."""
    lifecycle = Lifecycle()
    app[LIFECYCLE] = lifecycle
    app.on_shutdown.append(start_draining)
    app.router.add_get(HEALTH_PATH, healthz)
    app.router.add_get(READY_PATH, readyz)
    return lifecycle


def while_running(
    enter: Callable[[web.Application], AbstractAsyncContextManager[object]],
) -> CleanupContext:
    """A cleanup context that holds `enter(app)` open while the app runs (e.g. a policy's
    reload loop)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with enter(app):
            yield

    return context


def traces(provider: TracerProvider, *, owned: bool) -> CleanupContext:
    """A cleanup context that flushes and shuts down the service's own tracer provider
    (not one a caller lent it). Registered first, it runs last: spans from every later
    teardown are exported too."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        yield
        if owned and isinstance(provider, SdkTracerProvider):
            # Flushes the batch processor: blocking, so off the loop.
            await asyncio.to_thread(provider.shutdown)

    return context
