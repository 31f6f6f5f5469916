"""Latency classes: how long the gateway waits for a node depends on the kind of engine it
runs on, not on the slowest member of the federation.

A node is `interactive` (DuckDB, PostgreSQL: seconds) unless the federation file puts it in
the `batch` class (a hub on Spark or another distributed engine, whose every question pays a
job's start-up). Each class has its own node timeout (`TESSERA_GATEWAY_NODE_TIMEOUT_S`,
`TESSERA_GATEWAY_BATCH_NODE_TIMEOUT_S`); every node is asked at once and waited for up to
its class's timeout, and the question's deadline bounds them all. So the deadline can be long
enough for a Spark hub while an interactive node that hangs is given up after its own, short
timeout, and a question that does not ask the Spark hub is not slowed by it at all."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class LatencyClass(StrEnum):
    INTERACTIVE = "interactive"
    BATCH = "batch"


@dataclass(frozen=True, slots=True)
class NodeTimeouts:
    """Each class's node timeout in seconds; None: as long as the question's deadline."""

    interactive: float | None = None
    batch: float | None = None

    def within(self, deadline_s: float, latency: LatencyClass) -> float:
        """How long a node of class `latency` is waited for under a deadline of `deadline_s`:
        its class's timeout, never beyond the deadline."""
        own = self.batch if latency is LatencyClass.BATCH else self.interactive
        return deadline_s if own is None else min(own, deadline_s)


# Every class waited for until the question's deadline (no node timeout set).
WHOLE_DEADLINE: Final = NodeTimeouts()
