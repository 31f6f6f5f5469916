"""Policies that change while a service runs: new rules and revoked permits take effect
without a restart.

A service applies the policy `LivePolicy.current` holds. A question reads it once, at its
start, and keeps that object to its end; a reload swaps in a whole new object and never
changes one in place, so a question sees the old policy or the new one, never a mix.

`reload` reads the policy files (through `load`, in `policies.loader`, the one place files
are parsed) only when their bytes changed: a digest of the files' contents, since a
modification time misses two edits within its granularity. A policy that fails validation
is not applied: the old one stays in force, the failure is logged (file, line, problem) and
reported by `details` (a service's `/readyz`) until a reload succeeds. `watching` reloads
every `interval_s` and at once when asked (`request_reload`, which the services call on
SIGHUP).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_RELOAD_S: Final = 5.0
MIN_RELOAD_S: Final = 0.05
MAX_RELOAD_S: Final = 3600.0
# What /readyz shows of a failure: the first lines of the loader's report.
MAX_FAILURE_CHARS: Final = 1024


def files_digest(paths: Sequence[Path]) -> str:
    """The SHA-256 of the files' names and bytes, in the order given; a missing or unreadable
    file counts as such, so that its appearance is a change too."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError as exc:
            digest.update(f"\0unreadable:{type(exc).__name__}".encode())
        digest.update(b"\0\0")
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Loaded(Generic[T]):
    value: T
    digest: str
    loaded_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Failure:
    digest: str
    at: dt.datetime
    problem: str


class LivePolicy(Generic[T]):
    """The policy in force, and how to load it again from `files` (read by `load`)."""

    def __init__(
        self,
        load: Callable[[], T],
        files: Callable[[], Sequence[Path]],
        *,
        name: str,
        initial: T | None = None,
    ) -> None:
        """Loads the policy now unless `initial` is given (then the files as they are now are
        taken to hold it): a policy that does not load fails here, at start-up."""
        self.name = name
        self._load = load
        self._files = files
        digest = files_digest(files())
        value = load() if initial is None else initial
        self._loaded: Loaded[T] = Loaded(value, digest, _now())
        self._failure: Failure | None = None
        self._lock = asyncio.Lock()
        self._wake: asyncio.Event | None = None

    @classmethod
    def fixed(cls, value: T, *, name: str = "fixed policy") -> LivePolicy[T]:
        """A policy that never changes (no files to watch)."""
        return cls(lambda: value, lambda: (), name=name, initial=value)

    @property
    def current(self) -> T:
        return self._loaded.value

    @property
    def digest(self) -> str:
        return self._loaded.digest

    @property
    def failure(self) -> Failure | None:
        """The last reload's failure, while the files still hold the policy that failed."""
        return self._failure

    def reload(self) -> bool:
        """Load the files again if their contents changed; True when a new policy is in force.
        Blocking (it reads files): `refresh` runs it off the event loop."""
        paths = self._files()
        digest = files_digest(paths)
        if digest == self._loaded.digest:
            self._failure = None  # the files were put back as they were
            return False
        if self._failure is not None and self._failure.digest == digest:
            return False  # the same broken files: said once already
        try:
            value = self._load()
        except Exception as exc:  # whatever fails to load, the policy in force stays
            problem = str(exc)[:MAX_FAILURE_CHARS] or type(exc).__name__
            self._failure = Failure(digest, _now(), problem)
            log.error(
                "%s: reload failed, the previous policy stays in force: %s", self.name, problem
            )
            return False
        self._loaded = Loaded(value, digest, _now())
        self._failure = None
        log.info("%s: reloaded (version %s)", self.name, digest[:16])
        return True

    async def refresh(self) -> bool:
        """`reload` in a worker thread, one at a time."""
        async with self._lock:
            return await asyncio.to_thread(self.reload)

    def request_reload(self) -> None:
        """Reload as soon as possible (e.g. on SIGHUP); a no-op unless `watching`."""
        if self._wake is not None:
            self._wake.set()

    def details(self) -> dict[str, str]:
        """What a service's /readyz says about its policy: the version in force, since when,
        and whether the last reload failed (and why)."""
        loaded, failure = self._loaded, self._failure
        details = {"version": loaded.digest[:16], "loaded_at": _iso(loaded.loaded_at)}
        if failure is None:
            details["last_reload"] = "ok"
        else:
            details["last_reload"] = (
                f"failed at {_iso(failure.at)}, the previous policy stays in force: "
                f"{failure.problem}"
            )
        return details

    @contextlib.asynccontextmanager
    async def watching(self, interval_s: float, *, sighup: bool = True) -> AsyncIterator[None]:
        """Reload every `interval_s` (and on SIGHUP, when this runs in the main thread) for as
        long as the context lasts."""
        if not MIN_RELOAD_S <= interval_s <= MAX_RELOAD_S:
            raise ValueError(f"the reload interval must lie in [{MIN_RELOAD_S}, {MAX_RELOAD_S}]")
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        handled = sighup and _add_sighup(loop, self.request_reload)
        task = asyncio.create_task(self._watch(interval_s), name=f"reload {self.name}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if handled:
                loop.remove_signal_handler(signal.SIGHUP)
            self._wake = None

    async def _watch(self, interval_s: float) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), interval_s)
            wake.clear()
            try:
                await self.refresh()
            except Exception:  # the watcher must outlive any one failure
                log.exception("%s: reload crashed", self.name)


def _add_sighup(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> bool:
    try:
        loop.add_signal_handler(signal.SIGHUP, callback)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        return False
    return True


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
