"""Several processes of one service behind one port: a pre-fork parent reserves the port,
forks one worker per slot, and supervises them.

Each worker listens on a socket of its own bound to the port with SO_REUSEPORT (Linux), and
the kernel spreads new connections over the workers' sockets by a hash of their addresses.
One socket shared by every worker would give each connection to whichever worker wakes
first: on an idle service, the same one, so the keep-alive connections a client opens at
start all land on one worker and stay there. The parent binds the port with SO_REUSEPORT
but never listens on it: it holds the port (and resolves port 0 to the port every worker
binds) without taking connections. A worker listens once it is set up (until then its
share of the connections goes to the others), and one that dies loses the connections
waiting in its own queue (their clients see a reset, as from a single process that dies).
The workers are forked after the parent has imported the service and before any event loop
exists, so they share the imported code's pages.

Supervision:
- the parent prints one line, `<announce> listening on http://host:port<path>`, once every
  worker accepts connections;
- a worker that exits on its own after it was ready (killed, a crash) is started again in its
  slot, with the same worker number: what it had written durably stays, what it was answering
  is lost with the connection, as with one process;
- a worker that exits before it was ready (bad settings, a file it cannot open) stops the
  service: the next one would fail the same way. The parent then stops the others and exits
  with that worker's status (2 for a configuration error, as `tessera` does);
- SIGTERM or SIGINT to the parent is passed to every worker, each drains its in-flight
  requests (`serving.lifecycle`); the parent exits once all have, 0 when every worker did;
- SIGHUP is passed on (a policy reload in every worker);
- on Linux a worker is sent SIGTERM when the parent dies, so no orphan keeps the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from schema.errors import ConfigError

log = logging.getLogger(__name__)

Worker = Callable[[int, Callable[[], socket.socket], Callable[[], None]], None]
"""Serves until told to stop: `worker(slot, listen, ready)`. Runs in the forked child; once
it is set up it calls `listen()` for a listening socket of its own (connections hashed to it
wait in its queue from then on, so not before the worker can serve them) and `ready()` once
it accepts connections."""

_SIGNALS: Final = frozenset({signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
_STOPPING: Final = frozenset({signal.SIGTERM, signal.SIGINT})
_PR_SET_PDEATHSIG: Final = 1
# aiohttp's default backlog.
BACKLOG: Final = 128
# A worker that crashes again and again is restarted no more often than this.
RESTART_PAUSE_S: Final = 1.0


@dataclass
class _Slot:
    number: int
    pid: int = 0
    ready: bool = False
    started_at: float = 0.0


@dataclass
class _Parent:
    count: int
    sock: socket.socket
    worker: Worker
    announce_line: str
    slots: list[_Slot] = field(default_factory=list)
    mask: set[int | signal.Signals] = field(default_factory=set)
    stopping: bool = False
    # The exit status of the service: the first failure's.
    status: int = 0
    announced: bool = False
    ready_read: int = -1
    ready_write: int = -1


def reserve(host: str, port: int) -> socket.socket:
    """The port the workers will share, bound (port 0: a free one) and not listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        _share(sock)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def worker_socket(reserved: socket.socket) -> socket.socket:
    """A worker's own listening socket on the port `reserved` holds."""
    sock = socket.socket(reserved.family, socket.SOCK_STREAM)
    try:
        _share(sock)
        sock.bind(reserved.getsockname()[:2])
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _share(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


def serve_forked(count: int, sock: socket.socket, worker: Worker, *, announce_line: str) -> int:
    """Run `count` workers on the port `sock` reserves (`reserve`) until SIGTERM/SIGINT; the
    exit status (0: every worker stopped cleanly)."""
    if count < 1:
        raise ValueError("at least one worker")
    parent = _Parent(count, sock, worker, announce_line)
    parent.ready_read, parent.ready_write = os.pipe()
    os.set_blocking(parent.ready_read, False)
    # Everything imported so far is shared with the workers; frozen, the collector of each
    # worker leaves it alone, and so do its writes to the shared pages.
    gc.collect()
    gc.freeze()
    parent.mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        for number in range(count):
            parent.slots.append(_Slot(number))
            _fork(parent, parent.slots[-1])
        return _supervise(parent)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, parent.mask)
        os.close(parent.ready_read)
        os.close(parent.ready_write)


def _fork(parent: _Parent, slot: _Slot) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, parent.mask)
            _die_with_parent()
            os.close(parent.ready_read)
            ready_write = parent.ready_write

            def ready() -> None:
                os.write(ready_write, bytes([slot.number]))

            reserved = parent.sock

            def listen() -> socket.socket:
                own = worker_socket(reserved)
                reserved.close()
                return own

            parent.worker(slot.number, listen, ready)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except ConfigError as exc:
            # As `tessera` says it for one process: one line, exit 2.
            print(f"worker {slot.number}: {' '.join(str(exc).split())}", file=sys.stderr)
            code = 2
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    slot.pid, slot.ready, slot.started_at = pid, False, time.monotonic()
    log.info("worker %d started (pid %d)", slot.number, pid)


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _supervise(parent: _Parent) -> int:
    while any(slot.pid for slot in parent.slots):
        info = signal.sigtimedwait(_SIGNALS, 0.1)
        _read_ready(parent)
        if info is not None and info.si_signo in _STOPPING:
            _stop(parent, signal.SIGTERM)
        elif info is not None and info.si_signo == signal.SIGHUP:
            _signal_all(parent, signal.SIGHUP)
        _reap(parent)
    return parent.status


def _read_ready(parent: _Parent) -> None:
    with contextlib.suppress(BlockingIOError):
        for number in os.read(parent.ready_read, 1024):
            slot = parent.slots[number]
            slot.ready = True
    if not parent.announced and all(slot.ready for slot in parent.slots):
        parent.announced = True
        print(parent.announce_line, flush=True)


def _reap(parent: _Parent) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        slot = next((s for s in parent.slots if s.pid == pid), None)
        if slot is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        slot.pid = 0
        if parent.stopping:
            if code != 0:
                log.warning("worker %d exited with %d while stopping", slot.number, code)
                parent.status = parent.status or 1
            continue
        if not slot.ready:
            log.error("worker %d exited with %d before it was ready: stopping", slot.number, code)
            parent.status = parent.status or code or 1
            _stop(parent, signal.SIGTERM)
            continue
        log.warning("worker %d exited with %d: starting it again", slot.number, code)
        # A worker that dies at once again is not restarted in a tight loop.
        time.sleep(max(0.0, slot.started_at + RESTART_PAUSE_S - time.monotonic()))
        _fork(parent, slot)


def _stop(parent: _Parent, signo: signal.Signals) -> None:
    if not parent.stopping:
        parent.stopping = True
        log.info("stopping: every worker drains its in-flight requests")
    _signal_all(parent, signo)


def _signal_all(parent: _Parent, signo: signal.Signals) -> None:
    for slot in parent.slots:
        if slot.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.pid, signo)
