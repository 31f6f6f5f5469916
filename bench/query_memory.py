"""What one waiting question holds in the gateway, by part:
`python -m bench.query_memory [--queries 100] [--nodes 5] [--active 64]`.

The real gateway app of `bench.gateway_cpu` (GraphQL, policy, signing, vetting, audit trail,
tracing with a batch span processor) on a loopback test server, over nodes that answer at
once, but for the last of each question's nodes, which waits until every question is parked:
so each question holds what it holds while it waits for its slowest node (its coroutines and
tasks, open spans, parsed request and plan, the answers already in), and those beyond the
gateway's turns (`--active`, `gateway.admission`) what a question waiting for its turn holds.
Then everything is released and answered, and the next round starts.

tracemalloc's difference between the parked state and the state before the burst is split by
the first frame of each allocation's traceback (most recent first) that belongs to a part:
spans (opentelemetry), GraphQL (graphql-core, strawberry), aiohttp (requests, responses,
connections), pydantic (node answers, request models), asyncio (tasks, futures, handles), the
gateway's own code (coroutine frames, plans, outcomes), other. Beside it, the objects alive per
question by type (from the garbage collector), which counts coroutines, tasks and spans.
Bytes are Python's allocations, not the process's resident set (`bench.scale` measures that).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bench.gateway_cpu import InstantNodes, gateway
from bench.queries import COHORT
from gateway.federation import NodeInfo
from gateway.nodes import NodeOutcome
from schema.wire import NodeRequest
from trust.request_token import RequestSigner

FRAMES: Final = 16
# (part, path fragments), the first part whose fragment a frame's file holds wins.
PARTS: Final = (
    ("spans (opentelemetry)", ("/opentelemetry/",)),
    ("GraphQL (graphql-core, strawberry)", ("/graphql/", "/strawberry/")),
    ("aiohttp (requests, responses, connections)", ("/aiohttp/", "/multidict/", "/yarl/")),
    ("pydantic (node answers, request models)", ("/pydantic/", "/pydantic_core/")),
    ("asyncio (tasks, futures, handles)", ("/asyncio/",)),
    (
        "gateway code (coroutine frames, plans, outcomes)",
        ("/gateway/", "/schema/", "/policies/", "/trust/", "/oversight/", "/serving/"),
    ),
)
OTHER: Final = "other"


class ParkedNodes(InstantNodes):
    """`InstantNodes`, but the last node of each question waits for `release`."""

    def __init__(self, signer: RequestSigner, last: str) -> None:
        super().__init__(signer)
        self.last = last
        self.release = asyncio.Event()
        self.parked = 0

    async def query(
        self,
        node: NodeInfo,
        request: NodeRequest,
        *,
        approval_token: str,
        timeout: float,  # noqa: ASYNC109 - the protocol's signature
    ) -> NodeOutcome:
        if node.jurisdiction.value == self.last:
            self.parked += 1
            try:
                await self.release.wait()
            finally:
                self.parked -= 1
        return await super().query(node, request, approval_token=approval_token, timeout=timeout)


def part_of(traceback: tracemalloc.Traceback) -> str:
    for frame in reversed(traceback):
        for part, fragments in PARTS:
            if any(fragment in frame.filename for fragment in fragments):
                return part
    return OTHER


def by_part(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> Counter[str]:
    parts: Counter[str] = Counter()
    for stat in after.compare_to(before, "traceback"):
        parts[part_of(stat.traceback)] += stat.size_diff
    return parts


def live_types() -> Counter[str]:
    gc.collect()
    return Counter(type(o).__name__ for o in gc.get_objects())


@dataclass(frozen=True)
class Held:
    """What `queries` parked questions held: bytes by part, live objects by type."""

    queries: int
    parts: Counter[str]
    objects: Counter[str]


async def measure(queries: int, nodes: int, active: int) -> Held:
    from bench.cluster import ALL_JURISDICTIONS

    last = ALL_JURISDICTIONS[nodes - 1].value
    holder: list[ParkedNodes] = []

    def client(signer: RequestSigner) -> ParkedNodes:
        holder.append(ParkedNodes(signer, last))
        return holder[0]

    # One researcher asks everything, and every question is to be in flight at once: the
    # shares and node bulkheads would refuse most of the burst by design.
    overrides = {
        "max_active_cohorts": active,
        "max_waiting_cohorts": queries,
        "max_cohorts_per_researcher": 65536,
        "max_cohorts_per_application": 65536,
        "node_max_in_flight": 1024,
        "node_max_in_flight_per_applicant": 1024,
        "node_max_waiting": queries,
    }
    async with gateway(nodes, True, node_client=client, overrides=overrides) as ask:
        parked = holder[0]
        parked.release.set()
        for _ in range(20):
            await ask(COHORT)
        parked.release.clear()
        tracemalloc.start(FRAMES)
        types_before = live_types()
        before = tracemalloc.take_snapshot()
        burst = [asyncio.ensure_future(ask(COHORT)) for _ in range(queries)]
        for _ in range(3000):
            if parked.parked >= min(queries, active):
                break
            failed = next((t for t in burst if t.done() and t.exception()), None)
            if failed is not None:
                raise RuntimeError("a question failed") from failed.exception()
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"only {parked.parked} questions reached their last node")
        await asyncio.sleep(0.5)  # the waiting ones reach their turn's queue
        types_after = live_types()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        parked.release.set()
        await asyncio.gather(*burst)
    return Held(queries, by_part(before, after), types_after - types_before)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--active", type=int, default=1000, help="the gateway's turns")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    held = asyncio.run(measure(args.queries, args.nodes, args.active))
    queries, fanning = args.queries, min(args.queries, args.active)
    print(
        f"{queries} questions, {args.nodes} nodes: {fanning} waiting for their last node "
        f"({args.nodes - 1} answers in), {queries - fanning} waiting for a turn "
        f"(--active {args.active})"
    )
    total = sum(held.parts.values())
    print(f"\n{'part':52} {'KB all':>10} {'KB/question':>12}")
    for part, size in held.parts.most_common():
        print(f"{part:52} {size / 1024:10.0f} {size / 1024 / queries:12.1f}")
    print(f"{'total':52} {total / 1024:10.0f} {total / 1024 / queries:12.1f}")
    print(f"\nobjects alive per question, the {args.top} most numerous types:")
    for name, count in held.objects.most_common(args.top):
        print(f"  {name:40} {count / queries:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
