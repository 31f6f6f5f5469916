"""Profile a real gateway under load: `python -m bench.profile --nodes 5 --rate 100`.

Starts the controlled-delay nodes and a gateway as in the fan-out benchmark, attaches py-spy
to the gateway process while an open-loop load runs, and writes what py-spy saw (`--format
speedscope` for https://www.speedscope.app, `flamegraph` for an SVG, `raw` for collapsed
stacks, which `--top` summarises as the functions with the most samples, own and total).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from bench.cluster import ALL_JURISDICTIONS, Cluster, Gateway, NodePool
from bench.fakenode import Delay
from bench.load import Summary, client_session, closed_loop, graphql_sender, open_loop
from bench.queries import COHORT


def _stacks(collapsed: Path) -> Iterator[tuple[list[str], int]]:
    """Each stack of py-spy's collapsed output (`frame;frame;... count`) and its samples."""
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            yield stack.split(";"), int(count)


def top(collapsed: Path, limit: int = 25) -> str:
    """The functions with most samples in py-spy's collapsed stacks: own and total."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for frames, n in _stacks(collapsed):
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"{samples} samples", "own%   total%  function"]
    for frame, n in own.most_common(limit):
        lines.append(f"{100 * n / samples:5.1f}  {100 * total[frame] / samples:6.1f}  {frame}")
    lines.append("\nby total:")
    for frame, n in total.most_common(limit):
        lines.append(f"{100 * own[frame] / samples:5.1f}  {100 * n / samples:6.1f}  {frame}")
    return "\n".join(lines)


# Where a sample's time goes: the innermost frame of its stack matching one of these.
CATEGORIES: Final = (
    ("validate node answers", ("interpret (gateway/nodes.py",)),
    ("sign node requests", ("RequestSigner.sign",)),
    ("encode node requests", ("encode_request (gateway/nodes.py", "node_request (gateway")),
    ("combine + gateway disclosure control", ("combine (gateway/combine.py",)),
    ("authenticate the researcher", ("Authenticator.authenticate",)),
    ("legal policy decision", ("decide_access (gateway/access.py",)),
    ("plan (query model)", ("plan_query (gateway/planner.py",)),
    ("build GraphQL result objects", ("CohortResult.of",)),
    ("tracing", ("opentelemetry/",)),
    (
        "HTTP client: node calls",
        ("aiohttp/client", "aiohttp/connector.py", "HttpNodeClient.query", "fan_out"),
    ),
    (
        "GraphQL execution (fields, completion)",
        ("graphql/execution/", "strawberry/schema/", "strawberry/types/", "gateway/graphql/"),
    ),
    (
        "GraphQL parse, validate, caches",
        ("graphql/language/", "graphql/validation/", "strawberry/extensions/"),
    ),
    ("strawberry HTTP view, JSON", ("strawberry/http/", "strawberry/aiohttp/", "orjson")),
    ("aiohttp server: requests, responses", ("aiohttp/web_",)),
    # Last: the loop's frames are ancestors of everything above.
    ("event loop, sockets", ("asyncio/", "selectors.py")),
)


def categories(collapsed: Path) -> list[tuple[str, float]]:
    """Each category's share of the samples (innermost matching frame wins), largest first."""
    shares: Counter[str] = Counter()
    samples = 0
    for frames, n in _stacks(collapsed):
        samples += n
        shares[_category(frames)] += n
    return [(name, 100 * n / samples) for name, n in shares.most_common()] if samples else []


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, patterns in CATEGORIES:
            if any(p in frame for p in patterns):
                return name
    return "other"


async def profile(
    nodes: int, rate: float, duration_s: float, delay: Delay, out: Path, fmt: str, tracing: bool
) -> None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    workdir = Path(tempfile.mkdtemp(prefix="tessera-profile-"))
    jurisdictions = ALL_JURISDICTIONS[:nodes]
    pool = NodePool(workdir / "nodes", jurisdictions, delay)
    gateway = Gateway(workdir / "gateway", pool, jurisdictions, tracing=tracing)
    cluster = Cluster()
    cluster.add(*pool.services, gateway.service)
    try:
        await _profile_cluster(cluster, gateway, nodes, rate, duration_s, out, fmt, py_spy)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _profile_cluster(
    cluster: Cluster,
    gateway: Gateway,
    nodes: int,
    rate: float,
    duration_s: float,
    out: Path,
    fmt: str,
    py_spy: str,
) -> None:
    async with cluster, client_session() as session:
        send = graphql_sender(gateway.url, gateway.token, COHORT)
        await closed_loop(session, send, queries=50)
        spy = await asyncio.create_subprocess_exec(
            py_spy,
            "record",
            "--pid",
            str(gateway.pid),
            "--duration",
            str(int(duration_s)),
            "--rate",
            "500",
            "--format",
            fmt,
            "--output",
            str(out),
            "--nonblocking",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        await asyncio.sleep(1.0)
        samples = await open_loop(session, send, rate=rate, duration_s=duration_s - 2)
        _, err = await spy.communicate()
        if spy.returncode != 0:
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    latency = Summary.of([s.latency_ms for s in samples if s.ok], sum(not s.ok for s in samples))
    print(
        f"{nodes} nodes at {rate:g}/s: latency p50 {latency.p50:.1f} ms, p99 "
        f"{latency.p99:.1f} ms, {latency.errors} errors; profile in {out}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--delay-ms", type=Delay.parse, default=Delay(20, 50))
    parser.add_argument("--format", default="raw", choices=["raw", "speedscope", "flamegraph"])
    parser.add_argument("--output", type=Path, default=Path("gateway-profile.txt"))
    parser.add_argument("--no-tracing", action="store_true")
    parser.add_argument("--top", action="store_true", help="print the hottest functions (raw)")
    args = parser.parse_args(argv)
    asyncio.run(
        profile(
            args.nodes,
            args.rate,
            args.duration,
            args.delay_ms,
            args.output,
            args.format,
            not args.no_tracing,
        )
    )
    if args.top and args.format == "raw":
        print(top(args.output))
    if args.format == "raw":
        print("\nshare of the gateway's samples:")
        for name, share in categories(args.output):
            print(f"  {share:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
