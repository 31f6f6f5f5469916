"""Slots shared fairly between applicants: the gateway's bulkhead in front of each node
(`gateway.resilience`) and a node's own queue in front of its database (`connectors.service`).

At most `max_in_flight` holders at once, at most `max_waiting` more wait for a slot. Both are
shared between applicants (researchers) so that one applicant's burst cannot take another's
slot:

- an applicant holds at most `per_applicant` of the in-flight slots, so a newcomer finds a
  free slot at once while someone else's burst is in flight;
- a freed slot goes to the waiting applicants in turn (round-robin), each applicant's own
  requests in the order they came, never to whoever queued the most;
- when the waiting room is full, a newcomer who waits for fewer requests than the applicant
  who waits for the most takes the place of that applicant's newest waiter, which is turned
  away (`BulkheadFull`); otherwise the newcomer is turned away. A burst can only ever push
  out its own requests.

Everything here runs on the event loop without awaiting between a check and its update, so
no lock is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import AsyncIterator


class BulkheadFull(Exception):
    pass


class FairBulkhead:
    def __init__(
        self, max_in_flight: int, max_waiting: int, per_applicant: int | None = None
    ) -> None:
        self.max_in_flight = max_in_flight
        self.max_waiting = max_waiting
        self.per_applicant = max_in_flight if per_applicant is None else per_applicant
        self.in_flight: Counter[str] = Counter()
        # Applicants with waiters, in the order they are served next.
        self._turns: deque[str] = deque()
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}

    @property
    def busy(self) -> int:
        return self.in_flight.total()

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiters.values())

    def waiting_for(self, applicant: str) -> int:
        return len(self._waiters.get(applicant, ()))

    @contextlib.asynccontextmanager
    async def slot(self, applicant: str) -> AsyncIterator[None]:
        if self._may_start(applicant):
            self.in_flight[applicant] += 1
        else:
            await self._wait(applicant)
        try:
            yield
        finally:
            self._release(applicant)

    def _may_start(self, applicant: str) -> bool:
        return (
            self.busy < self.max_in_flight
            and self.in_flight[applicant] < self.per_applicant
            # An applicant's own requests go in the order they came.
            and not self._waiters.get(applicant)
        )

    async def _wait(self, applicant: str) -> None:
        if self.waiting >= self.max_waiting:
            self._push_out(applicant)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiters.get(applicant)
        if queue is None:
            queue = self._waiters[applicant] = deque()
            self._turns.append(applicant)
        queue.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Granted a slot just as the wait ended (a deadline): hand it on.
                self._release(applicant)
            else:
                self._forget(applicant, waiter)
            raise

    def _push_out(self, applicant: str) -> None:
        """Make room in a full waiting room for `applicant`, or raise BulkheadFull."""
        mine = self.waiting_for(applicant)
        greediest = max(self._waiters, key=lambda a: len(self._waiters[a]), default=None)
        if greediest is None or len(self._waiters[greediest]) <= mine + 1:
            raise BulkheadFull
        newest = self._waiters[greediest].pop()
        self._drop_if_empty(greediest)
        newest.set_exception(BulkheadFull())

    def _forget(self, applicant: str, waiter: asyncio.Future[None]) -> None:
        queue = self._waiters.get(applicant)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            self._drop_if_empty(applicant)

    def _drop_if_empty(self, applicant: str) -> None:
        if not self._waiters.get(applicant):
            self._waiters.pop(applicant, None)
            with contextlib.suppress(ValueError):
                self._turns.remove(applicant)

    def _release(self, applicant: str) -> None:
        self.in_flight[applicant] -= 1
        if self.in_flight[applicant] <= 0:
            del self.in_flight[applicant]
        self._dispatch()

    def _dispatch(self) -> None:
        """Give free slots to waiting applicants in turn, skipping those at their share."""
        skipped = 0
        while self.busy < self.max_in_flight and self._turns and skipped < len(self._turns):
            applicant = self._turns[0]
            self._turns.rotate(-1)
            if self.in_flight[applicant] >= self.per_applicant:
                skipped += 1
                continue
            skipped = 0
            queue = self._waiters[applicant]
            waiter = queue.popleft()
            self._drop_if_empty(applicant)
            self.in_flight[applicant] += 1
            waiter.set_result(None)
