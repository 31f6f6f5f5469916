"""Starting and stopping the federation's services as real processes on loopback.

Used by `tessera demo` and by the integration tests, so both exercise exactly what a hub or an
operator runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

import aiohttp

# Ports handed out for services are taken below the kernel's ephemeral range: a port from
# that range, free when checked, can be taken a moment later as the local end of any outgoing
# connection (the test suite opens thousands), and the service then fails to bind it.
_EPHEMERAL_RANGE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT: Final = 10_000


def _service_port_range() -> tuple[int, int]:
    try:
        first_ephemeral = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 32_768  # Linux's default
    return _LOWEST_PORT, max(first_ephemeral - 1, _LOWEST_PORT + 1_000)


def free_port() -> int:
    return free_port_block(1)


# Ports this process has handed out: a port is free when checked, but its service may not
# have bound it yet when the next one is asked for (a federation's ports are all chosen before
# its first process starts), so a port is never handed out twice.
_handed_out: set[int] = set()


def free_port_block(count: int, *, attempts: int = 100) -> int:
    """The first of `count` consecutive free loopback ports (for the demo, whose nodes take
    the ports after the gateway's), none handed out before by this process. Free when
    checked: another process may still take one."""
    low, high = _service_port_range()
    for _ in range(attempts):
        base = random.randint(low, high - count)
        block = range(base, base + count)
        if _handed_out.intersection(block):
            continue
        sockets: list[socket.socket] = []
        try:
            for port in block:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            _handed_out.update(block)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports found")


@dataclass
class Service:
    """One child process running `python -m tessera ...` (or `python <program> ...`), its log
    file and its base URL."""

    name: str
    args: Sequence[str]
    base_url: str
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    program: Sequence[str] = ("-m", "tessera")
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, *self.program, *self.args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Poll `/readyz` until it answers 200; fail early if the process died."""
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with code {self.process.returncode}; "
                        f"see {self.log_path}:\n{self.tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(
                        f"{self.base_url}/readyz", timeout=aiohttp.ClientTimeout(total=2)
                    ) as response:
                        if response.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} not ready after {timeout_s:.0f} s")
                await asyncio.sleep(0.1)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 5.0) -> None:
        if self.process is None or self.process.poll() is not None:
            self._close_log()
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class Supervisor:
    """Starts services, waits for all of them in parallel, stops them in reverse order."""

    services: list[Service] = field(default_factory=list)

    def add(self, service: Service) -> Service:
        self.services.append(service)
        return service

    async def start_all(self, timeout_s: float = 60.0) -> None:
        for service in self.services:
            if service.process is None:
                service.start()
        await asyncio.gather(*(s.wait_ready(timeout_s) for s in self.services))

    def stop_all(self) -> None:
        for service in reversed(self.services):
            service.stop()
