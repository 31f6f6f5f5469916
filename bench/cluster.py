"""Real processes on loopback for the benchmarks: controlled-delay nodes, gateways with
federation files pointing at them, and the bare aiohttp baseline.

The gateway runs as `tessera gateway serve` (through `bench.traced` when tracing is on) with
the federation file, keys and token that `tessera.local.LocalFederation` writes, so the
benchmark exercises exactly what an operator runs. Extra gateway environment (a feature's
switch, e.g. an audit trail) comes from `BENCH_GATEWAY_ENV` (`NAME=VALUE NAME2=VALUE2`) or
`gateway_env`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson

from bench.fakenode import STATS_PATH, TIMINGS_PATH, Delay
from bench.policies import write_policies
from schema.codes import Jurisdiction
from tessera.credentials import Credentials
from tessera.local import LocalFederation
from tessera.processes import Service, Supervisor, free_port

REPO: Final = Path(__file__).resolve().parent.parent
ALL_JURISDICTIONS: Final = tuple(Jurisdiction)
GATEWAY_ENV_VAR: Final = "BENCH_GATEWAY_ENV"


def gateway_env_from_environment() -> dict[str, str]:
    pairs = shlex.split(os.environ.get(GATEWAY_ENV_VAR, ""))
    env = dict(pair.partition("=")[::2] for pair in pairs)
    if any(not name for name in env):
        raise ValueError(f"{GATEWAY_ENV_VAR} must hold NAME=VALUE pairs")
    return env


def python_env() -> dict[str, str]:
    # The benchmark's modules (`python -m bench...`) import from the repository.
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


@dataclass
class NodePool:
    """Fake nodes for `jurisdictions`, spread over `processes` processes."""

    directory: Path
    jurisdictions: Sequence[Jurisdiction]
    delay: Delay
    processes: int = 2
    host: str = "127.0.0.1"
    ports: dict[Jurisdiction, int] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ports = {j: free_port() for j in self.jurisdictions}
        groups = [self.jurisdictions[i :: self.processes] for i in range(self.processes)]
        for i, group in enumerate(g for g in groups if g):
            args = [a for j in group for a in ("--node", f"{j.value}={self.ports[j]}")]
            delay = f"{self.delay.low_ms}:{self.delay.high_ms}"
            self.services.append(
                Service(
                    name=f"fake nodes {self.directory.name}-{i}",
                    program=("-m", "bench.fakenode"),
                    args=[*args, "--delay-ms", delay, "--seed", str(i), "--host", self.host],
                    base_url=self.url(group[0]),
                    log_path=self.directory / f"fakenodes-{i}.log",
                    env=python_env(),
                )
            )

    def url(self, jurisdiction: Jurisdiction) -> str:
        return f"http://{self.host}:{self.ports[jurisdiction]}"

    async def timings(self, session: aiohttp.ClientSession) -> dict[str, dict[str, float]]:
        """Each node's own time per query id, over every process."""
        merged: dict[str, dict[str, float]] = {}
        for service in self.services:
            async with session.get(service.base_url + TIMINGS_PATH) as response:
                part: dict[str, dict[str, float]] = orjson.loads(await response.read())
            for query_id, times in part.items():
                merged.setdefault(query_id, {}).update(times)
        return merged

    async def forget(self, session: aiohttp.ClientSession) -> None:
        for service in self.services:
            async with session.delete(service.base_url + TIMINGS_PATH) as response:
                response.raise_for_status()

    async def peak_in_flight(self, session: aiohttp.ClientSession) -> int:
        peak = 0
        for service in self.services:
            async with session.get(service.base_url + STATS_PATH) as response:
                stats: dict[str, Any] = orjson.loads(await response.read())
            peak += int(stats["peak_in_flight"])
        return peak


@dataclass
class Gateway:
    """A real gateway process whose federation is the first `len(jurisdictions)` nodes of a
    pool."""

    directory: Path
    pool: NodePool
    jurisdictions: Sequence[Jurisdiction]
    tracing: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    deadline_s: float = 10.0
    federation: LocalFederation = field(init=False)
    service: Service = field(init=False)
    token: Credentials = field(init=False)

    def __post_init__(self) -> None:
        self.federation = LocalFederation(
            directory=self.directory,
            jurisdictions=self.jurisdictions,
            persons=0,  # no database: the nodes are the pool's
            gateway_port=free_port(),
            node_ports=[self.pool.ports[j] for j in self.jurisdictions],
            console=False,
            pooling=False,  # fake nodes: no pooling keys
        )
        fed = self.federation
        fed.prepare_keys()
        fed.write_federation()
        policies = write_policies(self.directory / "policies", self.jurisdictions)
        self.token = fed.credentials()
        service = fed.gateway_service()
        service.args = [*service.args, "--deadline", str(self.deadline_s)]
        service.env = {
            **python_env(),
            "TESSERA_GATEWAY_POLICIES": str(policies),
            # One token stands for every researcher of the load here: the fair shares of one
            # researcher (gateway.fairshare, the node bulkheads' per-researcher slots) would
            # measure the shares, not the gateway, so they are raised out of reach.
            "TESSERA_GATEWAY_MAX_COHORTS_PER_RESEARCHER": "65536",
            "TESSERA_GATEWAY_MAX_COHORTS_PER_APPLICATION": "65536",
            "TESSERA_GATEWAY_NODE_MAX_IN_FLIGHT_PER_APPLICANT": self.env.get(
                "TESSERA_GATEWAY_NODE_MAX_IN_FLIGHT", "16"
            ),
            **self.env,
        }
        if self.tracing:
            service.program = ("-m", "bench.traced")
        service.name = f"gateway {self.directory.name}"
        self.service = service

    @property
    def url(self) -> str:
        return self.federation.gateway_url

    @property
    def pid(self) -> int:
        assert self.service.process is not None
        return self.service.process.pid


@dataclass
class Baseline:
    directory: Path
    pool: NodePool
    jurisdictions: Sequence[Jurisdiction]
    service: Service = field(init=False)

    def __post_init__(self) -> None:
        port = free_port()
        nodes = [a for j in self.jurisdictions for a in ("--node", f"{j.value}={self.pool.url(j)}")]
        self.service = Service(
            name=f"baseline {self.directory.name}",
            program=("-m", "bench.baseline"),
            args=[*nodes, "--port", str(port)],
            base_url=f"http://127.0.0.1:{port}",
            log_path=self.directory / "baseline.log",
            env=python_env(),
        )

    @property
    def url(self) -> str:
        return self.service.base_url + "/fanout"

    @property
    def pid(self) -> int:
        assert self.service.process is not None
        return self.service.process.pid


class Cluster:
    """Starts everything added to it at once and stops it all, in reverse, on exit."""

    def __init__(self) -> None:
        self.supervisor = Supervisor()

    def add(self, *services: Service) -> None:
        for service in services:
            self.supervisor.add(service)

    async def __aenter__(self) -> Cluster:
        try:
            await self.supervisor.start_all(timeout_s=90)
        except BaseException:
            self.supervisor.stop_all()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.supervisor.stop_all)


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of a process in MB, from /proc."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def tree_cpu_seconds(pid: int) -> float:
    """`cpu_seconds` of a process and its living children (a pre-fork gateway's workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    total = cpu_seconds(pid)
    for child in children:
        # A worker restarted between the two readings would be counted from zero: none is
        # in a run that holds.
        with contextlib.suppress(OSError):
            total += cpu_seconds(int(child))
    return total


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # utime and stime are fields 14 and 15 of stat(5); fields[0] is field 3.
    return (int(fields[11]) + int(fields[12])) / ticks
