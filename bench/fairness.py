"""Fair sharing of the nodes: three researchers under a bounded open-loop load while a fourth
sends the largest request the limits allow, again and again. Opt-in, not part of the suite:

    .venv/bin/python bench/fairness.py --rate 2 --duration 10

Starts connectors on synthetic data (real processes on free loopback ports) and, one after
the other, a gateway per configuration compared:

- `fair`: the gateway's defaults (each researcher's share of the questions in flight, fair
  node bulkheads); the heavy researcher sends the largest request its share admits
  (`--fair-fields`, by default 32 cohort fields: 2 operations x 16 aliases);
- `raised`: the same code with the shares raised out of reach (a researcher may hold every
  slot of a node); the heavy researcher sends the largest request the document limits allow
  (4 operations x 16 aliases);
- `before` (with `--before-src DIR`, a checkout of earlier code, e.g.
  `git worktree add ../before <commit>`): that code's gateway, same request as `raised`.

Each researcher's questions arrive at fixed intervals whatever the answers (open loop), for
`--duration` seconds; the heavy researcher sends a new request every `--heavy-every` seconds.
For each configuration it prints, side by side: the share of the three researchers' answers
with every node `OK` (the figure), their node statuses, latency p50/p99, and what became of
the heavy researcher's questions; then checks the gateway's audit trail against what each
researcher received (one entry per cohort field, a refusal for each field refused). Exits 1
when the audit trail does not match.

Every request loop here is bounded in count and time and targets loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
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
from tessera.processes import free_port  # noqa: E402
from tessera.tokens import DEMO_APPLICATION  # noqa: E402

CLIENT_TIMEOUT_S = 40.0
ALIASES = 16  # the document limit on aliases
RAISED: Mapping[str, str] = {
    "TESSERA_GATEWAY_MAX_COHORTS_PER_RESEARCHER": "65536",
    "TESSERA_GATEWAY_MAX_COHORTS_PER_APPLICATION": "65536",
    "TESSERA_GATEWAY_NODE_MAX_IN_FLIGHT_PER_APPLICANT": "16",
}


def cohort_field(alias: str, age: int, application: str = DEMO_APPLICATION) -> str:
    # Each field a question of its own (no stored answer to reuse), cheap for every node.
    return (
        f'{alias}: cohort(request: "{application}", criteria: {{ age: {{ min: {age} }}, '
        'conditions: [{ vocabulary: ICD10, code: "I10" }] }) '
        "{ count { value } byJurisdiction { status error } }"
    )


def request_of(
    fields: int, first_age: int, application: str = DEMO_APPLICATION
) -> list[dict[str, str]] | dict[str, str]:
    """`fields` cohort fields, 16 aliases to an operation; a batch when more than one."""
    operations = []
    for start in range(0, fields, ALIASES):
        names = range(start, min(start + ALIASES, fields))
        text = " ".join(cohort_field(f"q{i}", (first_age + i) % 90, application) for i in names)
        operations.append({"query": "{ " + text + " }"})
    return operations if len(operations) > 1 else operations[0]


@dataclass
class Tally:
    """What one researcher received, field by field."""

    fields: int = 0  # cohort fields returned, answered or not
    answered: int = 0  # non-null
    all_ok: int = 0  # answered with every node OK
    errors: Counter[str] = field(default_factory=Counter)  # by code, fields refused or failed
    node_statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    transport: Counter[str] = field(default_factory=Counter)  # HTTP or connection failures

    @property
    def ok_share(self) -> float:
        return self.all_ok / self.fields if self.fields else 0.0

    def add(self, body: Any, elapsed_ms: float) -> None:
        answers = body if isinstance(body, list) else [body]
        for answer in answers:
            data = answer.get("data") or {}
            for value in data.values():
                self.fields += 1
                if value is None:
                    continue
                self.answered += 1
                statuses = []
                for node in value["byJurisdiction"]:
                    kind = node["status"]
                    if node["error"] and node["error"].startswith(("NODE_BUSY", "CIRCUIT_OPEN")):
                        kind = f"{kind} ({node['error'].split(':')[0]})"
                    statuses.append(kind)
                self.node_statuses.update(statuses)
                self.all_ok += all(s == "OK" for s in statuses)
            for error in answer.get("errors") or ():
                self.errors[str((error.get("extensions") or {}).get("code"))] += 1
            if not data and not answer.get("errors"):
                self.transport["empty answer"] += 1
        self.latencies_ms.append(elapsed_ms)


@dataclass
class LoadResult:
    others: Tally
    heavy: Tally
    per_researcher: dict[str, Tally]


async def _send(
    session: aiohttp.ClientSession, url: str, payload: Any, credentials: Credentials, tally: Tally
) -> None:
    started = time.perf_counter()
    try:
        async with session.post(
            url,
            json=payload,
            headers=credentials.headers(),
            timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
        ) as response:
            if response.status != 200:
                tally.transport[f"HTTP {response.status}"] += 1
                return
            body = await response.json()
    except TimeoutError:
        tally.transport["client timeout"] += 1
        return
    except aiohttp.ClientError as e:
        tally.transport[f"connection: {type(e).__name__}"] += 1
        return
    tally.add(body, (time.perf_counter() - started) * 1000)


async def run_load(
    url: str,
    others: Mapping[str, Asker],
    heavy: tuple[str, Asker],
    *,
    rate: float,
    duration_s: float,
    heavy_fields: int,
    heavy_every_s: float,
) -> LoadResult:
    """Each of `others` asks one question every 1/`rate` s for `duration_s` s (their starts
    staggered), the heavy researcher `heavy_fields` questions every `heavy_every_s` s, from
    the start; open loop. Waits for every answer."""
    tallies = {name: Tally() for name in [*others, heavy[0]]}
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    arrivals: list[tuple[float, str]] = []
    for k, name in enumerate(others):
        t = k / (rate * len(others))
        while t < duration_s:
            arrivals.append((t, name))
            t += 1 / rate
    t = 0.0
    while heavy_every_s > 0 and t < duration_s:
        arrivals.append((t, heavy[0]))
        t += heavy_every_s
    arrivals.sort()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for n, (at, name) in enumerate(arrivals):
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            if name == heavy[0]:
                asker = heavy[1]
                payload: Any = request_of(heavy_fields, n, asker.application)
            else:
                asker = others[name]
                payload = request_of(1, n, asker.application)
            credentials = asker.credentials
            tasks.append(
                asyncio.create_task(_send(session, url, payload, credentials, tallies[name]))
            )
        await asyncio.gather(*tasks)
    merged = Tally()
    for name in others:
        tally = tallies[name]
        merged.fields += tally.fields
        merged.answered += tally.answered
        merged.all_ok += tally.all_ok
        merged.errors += tally.errors
        merged.node_statuses += tally.node_statuses
        merged.latencies_ms += tally.latencies_ms
        merged.transport += tally.transport
    return LoadResult(others=merged, heavy=tallies[heavy[0]], per_researcher=tallies)


def audit_decisions(trail: Path) -> dict[str, Counter[str]]:
    """Each researcher's gateway audit entries by decision, read with sqlite3 alone."""
    found: dict[str, Counter[str]] = {}
    if not trail.is_file():
        return found
    with contextlib.closing(sqlite3.connect(f"file:{trail}?mode=ro", uri=True)) as db:
        rows = db.execute(f"SELECT principal, decision FROM {ENTRIES_TABLE}")  # noqa: S608
        for principal, decision in rows:
            found.setdefault(str(principal), Counter())[str(decision)] += 1
    return found


def audit_mismatches(
    result: LoadResult, trail: Path, before: Mapping[str, Counter[str]] | None = None
) -> list[str]:
    """Where the trail differs from what the researchers received: one entry per cohort
    field returned, a REFUSED one per field refused or failed (entries counted in `before`,
    from an earlier run on the same trail, left out)."""
    decisions = audit_decisions(trail)
    problems = []
    for name, tally in result.per_researcher.items():
        entries = decisions.get(name, Counter()) - (before or {}).get(name, Counter())
        refused = entries.get("REFUSED", 0)
        if entries.total() != tally.fields or refused != tally.fields - tally.answered:
            problems.append(
                f"{name}: received {tally.answered} answers and "
                f"{tally.fields - tally.answered} refusals; the trail holds "
                f"{entries.total() - refused} answers and {refused} refusals"
            )
    return problems


@dataclass(frozen=True)
class Asker:
    credentials: Credentials
    # The application their permits belong to, which their questions name.
    application: str


def researchers(federation: LocalFederation) -> tuple[dict[str, Asker], tuple[str, Asker]]:
    """Three researchers and a heavy one, each with permits of an application of their own
    (every permit of the federation's members, from each member's HDAB)."""

    def asker(subject: str, application: str) -> Asker:
        permits = federation.permits(subject=subject, application_id=application)
        return Asker(federation.credentials(permits, subject=subject), application)

    others = {
        f"researcher-{k}@example.eu": asker(f"researcher-{k}@example.eu", f"DR-2026-010{k}")
        for k in (1, 2, 3)
    }
    heavy = "heavy@example.eu"
    return others, (heavy, asker(heavy, "DR-2026-0100"))


def start_federation(directory: Path, persons: int) -> LocalFederation:
    federation = LocalFederation(
        directory=directory,
        jurisdictions=(Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK),
        persons=persons,
        seed=7,
        gateway_port=free_port(),
        node_ports=[free_port() for _ in range(4)],
        console=False,
        # The load asks far more per minute than a researcher may; the rate limits are not
        # what is measured here.
        policies=policies_with_rate_limits(
            directory / "policies", per_minute=100_000, per_day=1_000_000
        ),
    )
    federation.prepare()
    for jurisdiction in federation.jurisdictions:
        federation.supervisor.add(federation.connector_service(jurisdiction))
    asyncio.run(federation.supervisor.start_all(120))
    return federation


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_configuration(
    federation: LocalFederation,
    name: str,
    env: Mapping[str, str],
    heavy_fields: int,
    args: argparse.Namespace,
    source: Path | None = None,
) -> tuple[LoadResult, list[str]]:
    port = free_port()
    gateway = federation.gateway_service(port=port, name=f"gateway {name}")
    gateway.env = {**gateway.env, **env}
    if source is not None:
        # `python -m` would put the working directory (this checkout) first on the path.
        gateway.program = (
            "-c",
            f"import runpy, sys; sys.path.insert(0, {str(source.resolve())!r}); "
            "runpy.run_module('tessera', run_name='__main__', alter_sys=True)",
        )
    federation.supervisor.add(gateway)
    gateway.start()
    try:
        asyncio.run(gateway.wait_ready(60))
        others, heavy = researchers(federation)
        result = asyncio.run(
            run_load(
                f"{gateway.base_url}/graphql",
                others,
                heavy,
                rate=args.rate,
                duration_s=args.duration,
                heavy_fields=heavy_fields,
                heavy_every_s=args.heavy_every if heavy_fields else 0.0,
            )
        )
    finally:
        gateway.stop()
    trail = federation.gateway_audit_db.with_name(
        f"{federation.gateway_audit_db.stem}-{port}.sqlite3"
    )
    return result, audit_mismatches(result, trail)


def describe(name: str, heavy_fields: int, result: LoadResult) -> list[str]:
    o, h = result.others, result.heavy
    statuses = ", ".join(f"{k} {v}" for k, v in o.node_statuses.most_common())
    errors = ", ".join(f"{k} {v}" for k, v in (o.errors + o.transport).most_common()) or "none"
    heavy_errors = ", ".join(f"{k} {v}" for k, v in (h.errors + h.transport).most_common())
    heavy = (
        f"  heavy researcher ({heavy_fields} fields a request): {h.answered} of {h.fields} "
        f"questions answered, {h.all_ok} with every node OK; refused or failed: "
        f"{heavy_errors or 'none'}"
        if heavy_fields
        else "  no heavy researcher"
    )
    return [
        f"{name}",
        f"  three researchers: {o.all_ok} of {o.fields} answers with every node OK "
        f"({100 * o.ok_share:.1f} %); p50 {percentile(o.latencies_ms, 0.5):.0f} ms, "
        f"p99 {percentile(o.latencies_ms, 0.99):.0f} ms",
        f"    node statuses: {statuses}",
        f"    refused or failed: {errors}",
        heavy,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2.0, help="questions/s per researcher")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of arrivals")
    parser.add_argument("--heavy-every", type=float, default=1.0, help="s between heavy requests")
    parser.add_argument("--fair-fields", type=int, default=32, help="heavy request under `fair`")
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--before-src", type=Path, help="a checkout of earlier code to compare")
    parser.add_argument("--keep", action="store_true", help="keep the processes' logs")
    args = parser.parse_args()
    configurations: list[tuple[str, dict[str, str], int, Path | None]] = [
        ("alone (the defaults, no heavy researcher)", {}, 0, None),
        ("fair (the defaults)", {}, args.fair_fields, None),
        ("raised (shares out of reach)", dict(RAISED), 4 * ALIASES, None),
    ]
    if args.before_src is not None:
        configurations.append((f"before ({args.before_src})", {}, 4 * ALIASES, args.before_src))
    directory = Path(tempfile.mkdtemp(prefix="tessera-fairness-"))
    print(f"connectors: 4 nodes of {args.persons} persons in {directory}", file=sys.stderr)
    federation = start_federation(directory, args.persons)
    lines: list[str] = []
    failed = False
    try:
        for name, env, heavy_fields, source in configurations:
            print(f"running: {name}", file=sys.stderr)
            result, problems = run_configuration(federation, name, env, heavy_fields, args, source)
            lines += describe(name, heavy_fields, result)
            if problems:
                failed = True
                lines += [f"  AUDIT MISMATCH: {p}" for p in problems]
            else:
                lines.append("  audit trail: one entry per question, as received")
    finally:
        federation.stop()
    print(
        f"3 researchers x {args.rate:g} questions/s for {args.duration:g} s, "
        f"a heavy request every {args.heavy_every:g} s; 4 nodes of {args.persons} persons; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print("\n".join(lines))
    if not args.keep:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
    else:
        print(f"logs: {directory / 'logs'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
