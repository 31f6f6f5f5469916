"""What one node call costs the gateway's process: `python -m bench.node_call --nodes 30`.

Three HTTP clients ask the same controlled-delay nodes (`bench.fakenode`, in processes of
their own) the same `tessera/1` request, `--nodes` calls at once as a question's fan-out makes
them:

- the gateway's: `gateway.nodes.post_signed` over `gateway.nodes.create_session()`, the
  session, headers, timeout, bounded read and error mapping of every node call (the token is
  made once: signing is measured by `bench.request_tokens`);
- aiohttp bare: the call of the bare fan-out (`bench.baseline`), on a plain session;
- streams: a minimal HTTP/1.1 client on asyncio streams (keep-alive connections, the request
  written in one piece, answers with a `Content-Length` only): about what a lean node transport
  would cost. It is a yardstick, not a transport: it knows nothing of timeouts, limits or
  errors.

Blocks of rounds alternate between the clients in this one process; the figure is the
process's CPU time per node call (the event loop's share included), its median over blocks,
and each client's ratio to the minimal one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.baseline import APPROVAL, BEARER, HEADERS, NODE_QUERY, node_request
from bench.cluster import ALL_JURISDICTIONS, Cluster, NodePool
from bench.fakenode import Delay
from bench.report import table
from gateway.federation import NodeInfo
from gateway.nodes import create_session, post_signed
from schema.wire import APPROVAL_HEADER, QUERY_PATH
from trust.request_token import QuestionCredential, RequestSigner

# One node call: (node, body) -> (HTTP status, answer bytes).
Call = Callable[[NodeInfo, bytes], Awaitable[tuple[int, bytes]]]
ROUNDS_PER_BLOCK: Final = 10


class StreamsClient:
    """HTTP/1.1 POSTs over keep-alive connections on asyncio streams, an idle pool per
    node."""

    def __init__(self) -> None:
        self._idle: dict[str, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def post(self, url: str, body: bytes) -> tuple[int, bytes]:
        idle = self._idle.setdefault(url, [])
        parts = urlsplit(url)
        if idle:
            reader, writer = idle.pop()
        else:
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        host = parts.netloc
        head = "".join(f"{name}: {value}\r\n" for name, value in HEADERS.items())
        writer.write(
            f"POST {QUERY_PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
            f"{head}\r\n".encode()
            + body
        )
        status = int((await reader.readline()).split()[1])
        length, keep = None, True
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                keep = False
        if length is None:
            raise RuntimeError("an answer without Content-Length")
        answer = await reader.readexactly(length)
        if keep:
            idle.append((reader, writer))
        else:
            writer.close()
        return status, answer

    def close(self) -> None:
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()


async def measure(nodes: int, blocks: int) -> dict[str, list[float]]:
    """CPU µs per node call of each client, one figure a block."""
    jurisdictions = ALL_JURISDICTIONS[:nodes]
    pool = NodePool(Path(tempfile.mkdtemp(prefix="tessera-node-call-")), jurisdictions, Delay(1, 3))
    infos = [NodeInfo(j, f"node-{j.value.lower()}", pool.url(j)) for j in jurisdictions]
    signer = RequestSigner(issuer="bench", kid="bench", key=Ed25519PrivateKey.generate())
    credential = QuestionCredential(authorization=BEARER, salt="s" * 22)
    streams = StreamsClient()
    cluster = Cluster()
    cluster.add(*pool.services)
    async with (
        cluster,
        create_session() as gateway_session,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, limit_per_host=32, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=None),
        ) as bare_session,
    ):

        async def gateway(node: NodeInfo, body: bytes) -> tuple[int, bytes]:
            return await post_signed(
                gateway_session,
                signer,
                node,
                QUERY_PATH,
                body,
                timeout=10.0,
                headers={APPROVAL_HEADER: APPROVAL},
                question=credential,
            )

        async def bare(node: NodeInfo, body: bytes) -> tuple[int, bytes]:
            async with bare_session.post(
                node.url + QUERY_PATH, data=body, headers=HEADERS
            ) as response:
                return response.status, await response.read()

        async def minimal(node: NodeInfo, body: bytes) -> tuple[int, bytes]:
            return await streams.post(node.url, body)

        clients: dict[str, Call] = {
            "the gateway's (post_signed)": gateway,
            "aiohttp bare (bench.baseline)": bare,
            "asyncio streams, minimal": minimal,
        }
        found: dict[str, list[float]] = {name: [] for name in clients}

        async def one_round(call: Call) -> None:
            query_id = str(uuid.uuid4())
            answers = await asyncio.gather(
                *(call(n, node_request(query_id, n.jurisdiction.value, NODE_QUERY)) for n in infos)
            )
            if any(status != 200 or not answer for status, answer in answers):
                raise RuntimeError(f"a node refused: {answers[0][1][:200]!r}")

        for call in clients.values():  # warm: connections, caches
            for _ in range(ROUNDS_PER_BLOCK):
                await one_round(call)
        names = list(clients)
        try:
            for b in range(blocks):
                for name in names[b % len(names) :] + names[: b % len(names)]:
                    cpu = time.process_time()
                    for _ in range(ROUNDS_PER_BLOCK):
                        await one_round(clients[name])
                    spent = time.process_time() - cpu
                    found[name].append(1e6 * spent / (ROUNDS_PER_BLOCK * len(infos)))
        finally:
            streams.close()
    return found


def report(found: dict[str, list[float]]) -> str:
    floor = statistics.median(found["asyncio streams, minimal"])
    rows = [["client", "CPU µs per node call", "× minimal"]]
    for name, blocks in found.items():
        median = statistics.median(blocks)
        rows.append([name, f"{median:.0f}", f"{median / floor:.1f}"])
    return table(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.node_call", description=__doc__)
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--blocks", type=int, default=12)
    args = parser.parse_args(argv)
    found = asyncio.run(measure(args.nodes, args.blocks))
    print(
        f"{args.nodes} nodes at once, {ROUNDS_PER_BLOCK} rounds a block, medians of "
        f"{args.blocks} blocks; load average {os.getloadavg()[0]:.1f}"
    )
    print(report(found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
