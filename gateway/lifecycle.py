"""Liveness, readiness and shutdown of the gateway process.

- `GET /healthz`: the process serves HTTP (nothing else is checked: a failing dependency must
  not get a live process restarted).
- `GET /readyz`: 200 only when every readiness check passes and the process is not draining;
  otherwise 503 with each failing check's reason. Either way the body carries `details` (e.g.
  which policy is in force, and why its last reload failed: the gateway stays ready on the
  previous one). Each part of the gateway that must be up
  before queries are answered registers a check (`Lifecycle.add_check`): the node client, the
  signing and issuer keys, the disclosure policies; the audit trail registers its database.
- Shutdown (SIGTERM or SIGINT, handled by `aiohttp.web.run_app`): the listening socket is
  closed first (no new connections), idle keep-alive connections are closed, `/readyz` turns
  503 (draining), in-flight queries get up to the shutdown timeout to finish (their fan-outs
  included), and only then are the cleanup contexts torn down, in reverse order of
  registration: see `gateway.app.create_app` for the order.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns None when ready, or why not (safe to show: no secret, path or value)."""
Detail = Callable[[], Mapping[str, str]]
"""What /readyz reports besides readiness (safe to show, like a check's reason)."""


@dataclass
class Lifecycle:
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    details: dict[str, Detail] = field(default_factory=dict)
    draining: bool = False

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        if name in self.checks:
            raise ValueError(f"readiness check {name!r} is registered twice")
        self.checks[name] = check

    def add_detail(self, name: str, detail: Detail) -> None:
        if name in self.details:
            raise ValueError(f"readiness detail {name!r} is registered twice")
        self.details[name] = detail

    def described(self) -> dict[str, dict[str, str]]:
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


LIFECYCLE: Final = web.AppKey("tessera.gateway.lifecycle", Lifecycle)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    lifecycle = request.app[LIFECYCLE]
    problems = await lifecycle.problems()
    details = lifecycle.described()
    if problems:
        return web.json_response(
            {"status": "unavailable", "problems": problems, "details": details}, status=503
        )
    return web.json_response(
        {"status": "ready", "checks": sorted(lifecycle.checks), "details": details}
    )


async def start_draining(app: web.Application) -> None:
    """`on_shutdown`: runs after the listening socket is closed, before in-flight requests
    are waited for."""
    app[LIFECYCLE].draining = True
    log.info("shutting down: no new connections; draining in-flight queries")


def install(app: web.Application) -> Lifecycle:
    lifecycle = Lifecycle()
    app[LIFECYCLE] = lifecycle
    app.on_shutdown.append(start_draining)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return lifecycle
