"""The gateway's turns for the expensive phase of a question: its fan-out and its combining.

A question in that phase holds what costs memory: its node requests and connections, each node's
parsed answer, the combined tables. At most `active` questions are in it at once, in the gateway
process, whoever asks; up to `waiting` more wait for a turn in arrival order, each no longer
than its deadline, holding meanwhile their HTTP request, GraphQL execution and plan (~95 KB
each, `bench.query_memory`). A question beyond those, or one whose deadline passes while it
waits, is refused with GATEWAY_BUSY and a `retryAfter`: nothing was asked of any node. So a
burst of questions stays inside a memory bound however large it is, and no question waits
beyond its deadline: the wait is spent from it.

This is not a share: a researcher's and an application's shares of the questions in flight
(`gateway.fairshare`) are checked before a question waits here. The counts live in the
gateway process: each worker (`gateway.workers`) and each replica keeps its own, whole,
since what they bound is one process's memory.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from schema.errors import ErrorCode, TesseraError


def gateway_busy(message: str, *, retry_after_s: float) -> TesseraError:
    return TesseraError(
        message, code=ErrorCode.GATEWAY_BUSY, retryAfter=max(1, math.ceil(retry_after_s))
    )


def _nothing(reason: str) -> None:
    pass


@dataclass
class Admission:
    """`turn` admits one question into the expensive phase, or refuses it."""

    active: int
    waiting: int
    # Told of each refusal: `full` (no place to wait), `waited` (the deadline passed waiting).
    on_refused: Callable[[str], None] = _nothing
    in_phase: int = 0
    queue: deque[asyncio.Future[None]] = field(default_factory=deque)

    @asynccontextmanager
    async def turn(self, *, within_s: float) -> AsyncIterator[float]:
        """Hold a turn while the block runs; yields the seconds waited for it. Waits at most
        `within_s`; refuses at once when every place to wait is taken."""
        waited = await self._enter(within_s)
        try:
            yield waited
        finally:
            self._leave()

    async def _enter(self, within_s: float) -> float:
        if self.in_phase < self.active and not self.queue:
            self.in_phase += 1
            return 0.0
        if len(self.queue) >= self.waiting:
            self.on_refused("full")
            raise gateway_busy(
                f"the gateway is answering {self.in_phase} questions and {len(self.queue)} "
                "more are waiting, as many as it holds: retry shortly",
                retry_after_s=1,
            )
        loop = asyncio.get_running_loop()
        started = loop.time()
        turn: asyncio.Future[None] = loop.create_future()
        self.queue.append(turn)
        try:
            async with asyncio.timeout(within_s):
                # Shielded: a turn handed over while this waiter is cancelled is not lost.
                await asyncio.shield(turn)
        except BaseException as error:
            if turn.done() and not turn.cancelled():
                # The place was handed over as the wait ended: pass it on.
                self._leave()
            else:
                turn.cancel()
                self.queue.remove(turn)
            if isinstance(error, TimeoutError):
                self.on_refused("waited")
                raise gateway_busy(
                    f"the gateway is answering {self.in_phase} questions: this one waited "
                    f"{within_s:.1f} s, its deadline, for its turn; retry shortly",
                    retry_after_s=within_s,
                ) from None
            raise
        return loop.time() - started

    def _leave(self) -> None:
        # The place goes straight to the oldest waiter, so a newcomer cannot overtake it.
        while self.queue:
            turn = self.queue.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.in_phase -= 1
