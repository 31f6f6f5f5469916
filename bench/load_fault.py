"""Sustained open-loop load on a local federation while a connector (and optionally the
gateway) is killed with SIGKILL and restarted. Opt-in, not part of the test suite:

    .venv/bin/python bench/load_fault.py --rate 20 --duration 30 --kill-at 8 --restart-at 14

Starts a federation of real processes on free loopback ports (connectors FR, DE, DK on
synthetic data, and the gateway), sends queries at Poisson arrivals at `--rate` per second
whatever the answers (open loop: a slow gateway does not slow the load down), and reports:

- queries sent and answered (HTTP 200 with a cohort), errors by kind, p50/p99 latency;
- each node's statuses (OK, UNAVAILABLE, CIRCUIT_OPEN, TIMEOUT, ...);
- the gateway's audit entries for the answered queries, which must be exactly one each (none
  lost to a SIGKILL, none duplicated), and each node's entries for the answers it gave (status
  OK), likewise;
- `tessera audit verify` of every chain (the gateway's and each node's) once all stopped.

Exits 1 when an answered query lacks its entry (or has two) or a chain does not verify.

Every request loop here is bounded in count and time and targets loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oversight.audit.store import ENTRIES_TABLE  # noqa: E402
from schema.codes import Jurisdiction  # noqa: E402
from tessera.credentials import Credentials  # noqa: E402
from tessera.local import LocalFederation, policies_with_rate_limits  # noqa: E402
from tessera.processes import Service, free_port  # noqa: E402

QUERY = """{ cohort(request: "DR-2026-0042",
  criteria: { conditions: [{ vocabulary: ICD10, code: "I10" }] }) {
  queryId count { value } byJurisdiction { jurisdiction status error }
} }"""
MAX_IN_FLIGHT = 500  # the load generator's own bound: beyond it a query is counted dropped
CLIENT_TIMEOUT_S = 30.0


def entries_by_query(trail: Path) -> Counter[str]:
    """How many entries each query id has in an audit trail, read with sqlite3 alone (not
    with the code under test)."""
    if not trail.is_file():
        return Counter()
    with contextlib.closing(sqlite3.connect(f"file:{trail}?mode=ro", uri=True)) as db:
        rows = db.execute(f"SELECT query_id FROM {ENTRIES_TABLE} WHERE query_id IS NOT NULL")  # noqa: S608
        return Counter(str(row[0]) for row in rows)


def audit_entries(trail: Path, query_ids: set[str]) -> dict[str, int]:
    """The entries `trail` holds for the queries in `query_ids`: in all, and how many of the
    queries have none or more than one."""
    found = entries_by_query(trail)
    counts = [found[q] for q in query_ids]
    return {
        "entries": sum(counts),
        "missing": sum(c == 0 for c in counts),
        "duplicated": sum(c > 1 for c in counts),
    }


def verify_trails(federation: LocalFederation) -> dict[str, str]:
    """`tessera audit verify` (the real command) of each service's trail, with the key its
    heads are signed with; its output line(s), prefixed with FAILED when it exited non-zero."""
    results = {}
    for name, (trail, key) in federation.audit_trails().items():
        command = ["audit", "verify", "--db", str(trail), "--key", str(key)]
        done = subprocess.run(
            [sys.executable, "-m", "tessera", *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,
        )
        text = (done.stdout + done.stderr).strip()
        results[name] = text if done.returncode == 0 else f"FAILED ({done.returncode}): {text}"
    return results


@dataclass
class Results:
    sent: int = 0
    answered: int = 0
    dropped: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    node_statuses: defaultdict[str, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    answered_ids: set[str] = field(default_factory=set)
    # The answered queries each node answered (status OK), by jurisdiction.
    node_ok_ids: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    events: list[str] = field(default_factory=list)


async def one_query(
    session: aiohttp.ClientSession, url: str, token: Credentials, results: Results
) -> None:
    started = time.perf_counter()
    try:
        async with session.post(
            url,
            json={"query": QUERY},
            headers=token.headers(),
            timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
        ) as response:
            if response.status != 200:
                results.errors[f"HTTP {response.status}"] += 1
                return
            body = await response.json()
    except TimeoutError:
        results.errors["client timeout"] += 1
        return
    except aiohttp.ClientError as e:
        results.errors[f"connection: {type(e).__name__}"] += 1
        return
    cohort = (body.get("data") or {}).get("cohort")
    if cohort is None:
        codes = {str((e.get("extensions") or {}).get("code")) for e in body.get("errors", [])}
        results.errors[f"GraphQL {','.join(sorted(codes))}"] += 1
        return
    results.answered += 1
    results.answered_ids.add(cohort["queryId"])
    results.latencies_ms.append((time.perf_counter() - started) * 1000)
    for node in cohort["byJurisdiction"]:
        kind = node["status"]
        if node["error"] and node["error"].startswith(("CIRCUIT_OPEN", "NODE_BUSY")):
            kind = f"{kind} ({node['error'].split(':')[0]})"
        results.node_statuses[node["jurisdiction"]][kind] += 1
        if kind == "OK":
            results.node_ok_ids[node["jurisdiction"]].add(cohort["queryId"])


async def load(federation: LocalFederation, args: argparse.Namespace, results: Results) -> None:
    token = federation.researcher()
    rng = random.Random(args.seed)
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: set[asyncio.Task[None]] = set()
    victim = federation.service(f"connector {args.victim}")
    gateway = federation.service("gateway")
    schedule = sorted(
        (t, what)
        for t, what in (
            (args.kill_at, "kill connector"),
            (args.restart_at, "restart connector"),
            (args.kill_gateway_at, "kill gateway"),
            (args.restart_gateway_at, "restart gateway"),
        )
        if t is not None
    )
    faults: list[asyncio.Task[None]] = []
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as session:
        next_at = 0.0
        while True:
            now = loop.time() - start
            while schedule and schedule[0][0] <= now:
                _, what = schedule.pop(0)
                results.events.append(f"{now:6.1f} s  {what}")
                # In the background: arrivals go on while a process restarts.
                faults.append(asyncio.create_task(fault(what, victim, gateway)))
            if now >= args.duration:
                break
            if next_at <= now:
                results.sent += 1
                if len(tasks) >= MAX_IN_FLIGHT:
                    results.dropped += 1
                else:
                    task = asyncio.create_task(
                        one_query(session, federation.gateway_url, token, results)
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                next_at += rng.expovariate(args.rate)
                continue
            await asyncio.sleep(min(next_at - now, 0.05))
        if tasks:
            await asyncio.wait(tasks, timeout=CLIENT_TIMEOUT_S + 5)
        await asyncio.gather(*faults)


async def fault(what: str, victim: Service, gateway: Service) -> None:
    if what == "kill connector":
        victim.kill()
    elif what == "restart connector":
        victim.start()
        await victim.wait_ready()
    elif what == "kill gateway":
        gateway.kill()
    elif what == "restart gateway":
        gateway.start()
        await gateway.wait_ready()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def report(results: Results, federation: LocalFederation) -> dict[str, Any]:
    gateway = audit_entries(federation.gateway_audit_db, results.answered_ids)
    nodes = {
        j.value: {
            "answered_ok": len(results.node_ok_ids[j.value]),
            **audit_entries(federation.audit_db(j), results.node_ok_ids[j.value]),
        }
        for j in federation.jurisdictions
    }
    verified = verify_trails(federation)
    # Exactly one entry per answer: as many entries as answers, and no answer without one.
    expected = [(gateway, results.answered), *((n, n["answered_ok"]) for n in nodes.values())]
    complete = all(found["entries"] == n and found["missing"] == 0 for found, n in expected)
    return {
        "sent": results.sent,
        "answered": results.answered,
        "dropped_by_load_generator": results.dropped,
        "errors": dict(results.errors.most_common()),
        "latency_ms": {
            "p50": round(percentile(results.latencies_ms, 50), 1),
            "p99": round(percentile(results.latencies_ms, 99), 1),
            "max": round(max(results.latencies_ms, default=float("nan")), 1),
        },
        "node_statuses": {j: dict(c.most_common()) for j, c in results.node_statuses.items()},
        "audit": {
            "gateway": {"answered": results.answered, **gateway},
            "nodes": nodes,
            "complete": complete,
            "verify": verified,
            "verified": not any(v.startswith("FAILED") for v in verified.values()),
        },
        "events": results.events,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=20.0, help="queries per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--persons", type=int, default=5000, help="persons per country")
    parser.add_argument("--victim", default="DK", choices=["FR", "DE", "DK"])
    parser.add_argument("--kill-at", type=float, default=8.0)
    parser.add_argument("--restart-at", type=float, default=14.0)
    parser.add_argument("--kill-gateway-at", type=float, default=None)
    parser.add_argument("--restart-gateway-at", type=float, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="federation directory")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    if not 0 < args.rate <= 500 or not 0 < args.duration <= 600:
        parser.error("--rate must lie in (0, 500] and --duration in (0, 600]")
    directory = args.dir or Path(tempfile.mkdtemp(prefix="tessera-load-fault-"))
    jurisdictions = (Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.DK)
    federation = LocalFederation(
        directory=directory,
        # Load asks far more than a researcher may per minute.
        policies=policies_with_rate_limits(
            directory / "policies", per_minute=100_000, per_day=1_000_000
        ),
        jurisdictions=jurisdictions,
        persons=args.persons,
        gateway_port=free_port(),
        node_ports=[free_port() for _ in jurisdictions],
        console=False,
        gateway_env={
            "TESSERA_GATEWAY_CIRCUIT_RESET_S": "2",
            # One researcher stands for the whole load: its fair share would refuse most of
            # it while a node is down (queries wait up to their deadline), which is not what
            # this measures.
            "TESSERA_GATEWAY_MAX_COHORTS_PER_RESEARCHER": "65536",
            "TESSERA_GATEWAY_MAX_COHORTS_PER_APPLICATION": "65536",
            "TESSERA_GATEWAY_NODE_MAX_IN_FLIGHT_PER_APPLICANT": "16",
        },
    )
    federation.prepare()
    results = Results()
    try:
        asyncio.run(federation.start())
        asyncio.run(load(federation, args, results))
    finally:
        federation.stop()
    summary = report(results, federation)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    audit = summary["audit"]
    print(
        f"audit entries vs answered queries (must be equal): "
        f"{audit['gateway']['entries']} vs {results.answered}"
        f" ({audit['gateway']['missing']} missing, {audit['gateway']['duplicated']} duplicated);"
        f" every chain verifies: {'yes' if audit['verified'] else 'NO'}",
        file=sys.stderr,
    )
    return 0 if audit["complete"] and audit["verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
