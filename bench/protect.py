"""The node's protection against its SQL: `python -m bench.protect [--persons N] [--reps N]`.

A real connector app (`connectors.app.create_app`: DuckDB, the file ledger, the SQLite answer
store, OpenDP's discrete Gaussian, the SQLite audit trail) in this process, with a state
directory of its own, answers signed five-table questions on the connector benchmark's
synthetic database (`.tessera/bench/connector-<persons>/`, generated once). Each answer's
audit entry records how long each step of the pipeline took: `population` (the cohort
computed into a temporary table, its persons listed), `ledger` (the answer store's look-up,
who can still be counted, the charge), `sql` (the persons the ledger leaves out deleted, the
tables computed from the cohort) and `protect` (the tables over their domains, the noise drawn
and stored, the ledger flushed, the values released).

The goal figure compares the protection's own steps, `ledger + protect`, with the question's
SQL: `CompiledQuery.sql`, the one statement a node without protection would run (every table
of the whole cohort), timed on the same database just before and just after each question
(the mean of the two). Beside it: everything the protected pipeline took beyond that statement
(`population + ledger + sql + protect - unprotected`, which also holds listing the persons and
splitting the work in two statements), and `ledger + protect` over the `sql` step alone (the
tables from the cohort table: a part of the question's SQL only, and a smaller part the more
the cohort table holds).

Four situations, each repeated with applicants of their own (`--reps`; medians):

- fresh: a new applicant asks: noise drawn and stored, every person of the cohort charged;
- again: the same applicant asks the same question: served from the answer store (no `sql`
  step: the `sql` ratio is to the fresh question's `sql`);
- after many: an applicant with twenty earlier questions on assorted cohorts (a ledger with
  realistic spend, nobody at the cap yet) asks;
- at the cap: an applicant who has spent the whole budget of everyone aged 40 or more asks
  about everyone: those persons leave the counts (the cohort table loses them before `sql`).

Step times are wall-clock times of one request at a time; the machine's other work moves them,
the ratio of neighbouring steps far less.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiohttp.test_utils import TestServer

from bench.connector import JURISDICTION, REFERENCE, federation_for, median, synthesise
from bench.report import Figure, Report, goal_at_most, table
from connectors.app import AUDIT_STORE, BACKEND, SERVICE, create_app
from connectors.backends import Backend
from connectors.compiler import ConceptResolver, compile_query
from connectors.service import QueryService
from connectors.settings import ConnectorSettings
from gateway.federation import load_federation
from oversight.audit.store import AuditStore
from schema.codes import Dimension, NodeStatus, NoiseLevel
from schema.query import CohortQuery
from schema.wire import NodeRequest, NodeResponse
from serving.run import freeze_heap
from tessera.keys import jwks_path, private_key_path
from tessera.local import GATEWAY_KEYS, LocalFederation, hdab_keys
from tessera.tokens import hdab_issuer
from trust.request_token import RequestSigner

GOAL: Final = 0.10
PROTECTION: Final = ("ledger", "protect")
STEPS: Final = ("population", *PROTECTION, "sql")
# The question's SQL run alone as a node without protection would: see `Node.unprotected`.
UNPROTECTED: Final = "unprotected"
CACHE: Final = Path(__file__).resolve().parent.parent / ".tessera" / "bench"

D = Dimension
FIVE_TABLES: Final = [
    (),
    (D.SEX,),
    (D.AGE_BAND_5,),
    (D.SEX, D.AGE_BAND_10),
    (D.AGE_BAND_5, D.CALENDAR_YEAR),
]
E11_WINDOW: Final = {
    "vocabulary": "ICD10",
    "code": "E11",
    "descendants": True,
    "window": {"start": "2015-01-01", "end": "2025-12-31"},
}
# The question's cohorts: diabetics with a diagnosis in 2015-2025 (calendar years of that
# diagnosis: 297 cells in the last table), and everyone (years of the first observation,
# 1900-2026: 3,456 cells).
COHORTS: Final[dict[str, dict[str, Any]]] = {
    "E11 2015-2025": {"conditions": [E11_WINDOW]},
    "everyone": {},
}
# What an applicant asked before ("after many"): twenty tables over assorted cohorts, each
# person charged for at most about fifteen of them (0.3 of the 0.5 budget at sd 5).
HISTORY: Final[list[tuple[dict[str, Any], list[tuple[Dimension, ...]]]]] = [
    ({}, [(), (D.SEX,), (D.AGE_BAND_20,)]),
    ({"age": {"min": 18}}, [(), (D.AGE_BAND_10,)]),
    ({"age": {"min": 65}}, [(D.SEX, D.AGE_BAND_10)]),
    ({"sex": "FEMALE", "age": {"min": 40, "max": 69}}, [(), (D.AGE_BAND_10,)]),
    ({"conditions": [{"vocabulary": "ICD10", "code": "E11", "descendants": True}]}, [(), (D.SEX,)]),
    ({"conditions": [{"vocabulary": "ICD10", "code": "I10", "descendants": True}]}, [()]),
    ({"conditions": [{"vocabulary": "ICD10", "code": "I50", "descendants": True}]}, [()]),
    ({"conditions": [E11_WINDOW]}, [(D.CALENDAR_YEAR,)]),
    ({"age": {"max": 17}}, [(), (D.SEX,), (D.AGE_BAND_5,)]),
    ({"sex": "MALE"}, [(D.AGE_BAND_20,), (D.CALENDAR_YEAR,)]),
]
# Spends everyone aged 40 or more to the cap: five questions of five tables at sd 5.
EXHAUST: Final = ({"age": {"min": 40}}, FIVE_TABLES)
SITUATIONS: Final = ("fresh", "again", "after many", "at the cap")


def question(
    criteria: dict[str, Any], tables: Sequence[tuple[Dimension, ...]], day: int = 0
) -> CohortQuery:
    return CohortQuery.model_validate(
        {
            "criteria": criteria,
            "tables": [list(t) for t in tables],
            "reference_date": REFERENCE + dt.timedelta(days=day),
        }
    )


@dataclass
class Node:
    """The connector app in this process, and how to ask it as the gateway would."""

    fed: LocalFederation
    service: QueryService
    audit: AuditStore
    signer: RequestSigner
    node_id: str
    backend: Backend
    seen: int = 0

    async def ask(
        self, query: CohortQuery, applicant: str, noise: NoiseLevel = NoiseLevel.STANDARD
    ) -> dict[str, float]:
        """Ask as researcher `applicant` of organisation `applicant`; each step's ms."""
        subject = f"{applicant}@bench.tessera.eu"
        approval = self.fed.permit_approval(JURISDICTION, applicant=f"org {applicant}")
        request = NodeRequest(
            query_id=str(uuid.uuid4()),
            request_id=approval.request_id,
            jurisdiction=JURISDICTION,
            query=query,
            approval=approval,
            subject=subject,
            noise=noise,
        )
        body = request.model_dump_json().encode()
        response: NodeResponse = await self.service.handle(
            authorization=f"Bearer {self.signer.sign(body, audience=self.node_id)}",
            body=body,
            approval_token=self.fed.permit(JURISDICTION, approval, subject=subject),
        )
        if response.status is not NodeStatus.OK:
            raise RuntimeError(f"the connector answered {response.status}: {response.reasons}")
        entries = await self.audit.entries(f"node:{self.node_id}", after=self.seen)
        self.seen = entries[-1].seq
        steps = {s.name: s.elapsed_us / 1000 for s in entries[-1].record().steps}
        return {name: steps.get(name, 0.0) for name in STEPS}

    async def measured(self, query: CohortQuery, applicant: str) -> dict[str, float]:
        """`ask`'s step times, with the unprotected statement's time (`UNPROTECTED`): the
        mean of a run just before the question and one just after, so that neither side has
        the database's warmer buffers to itself."""
        before = await self.unprotected(query)
        steps = await self.ask(query, applicant)
        after = await self.unprotected(query)
        return {**steps, UNPROTECTED: (before + after) / 2}

    async def unprotected(self, query: CohortQuery) -> float:
        """The ms of the question's own SQL as a node without protection would run it: one
        statement computing every table of the whole cohort (`CompiledQuery.sql`, nobody
        left out), on the connector's database."""
        backend = self.backend
        compiled = await ConceptResolver(backend.execute, dialect=backend.dialect).bind(
            compile_query(query, dialect=backend.dialect)
        )
        started = time.perf_counter()
        await backend.execute(compiled)
        return (time.perf_counter() - started) * 1000


def settings_for(fed: LocalFederation, work: Path) -> ConnectorSettings:
    """What `tessera connector serve` gets from the federation, with a state directory and an
    audit trail of this run's own."""
    keys = fed.keys_dir
    return ConnectorSettings.from_env(
        {},
        jurisdiction=JURISDICTION,
        database=fed.database(JURISDICTION),
        gateway_jwks=jwks_path(keys, GATEWAY_KEYS),
        hdab_issuer=hdab_issuer(JURISDICTION),
        hdab_jwks_file=jwks_path(keys, hdab_keys(JURISDICTION)),
        state_dir=work / "state",
        audit_db=str(work / "audit.sqlite3"),
        audit_key=private_key_path(keys, fed.audit_key_name(JURISDICTION)),
    )


Times = dict[str, list[dict[str, float]]]


async def measure(
    fed: LocalFederation, work: Path, *, reps: int, cohorts: Sequence[str] = tuple(COHORTS)
) -> dict[str, Times]:
    """Per cohort (of `COHORTS`), per situation, each rep's step times."""
    fed.write_federation()
    gateway = load_federation(fed.federation_file)
    signer = RequestSigner(
        issuer=gateway.gateway_id, kid=gateway.signing_kid, key=gateway.signing_key
    )
    settings = settings_for(fed, work)
    app = create_app(settings)
    results: dict[str, Times] = {}
    async with TestServer(app):  # runs the app's start-up: keys, audit trail
        node = Node(fed, app[SERVICE], app[AUDIT_STORE], signer, settings.node_id, app[BACKEND])
        names = _applicants()
        # Warm-up: caches, the database's buffers, the first ledger and answer files.
        for cohort in cohorts:
            await node.ask(question(COHORTS[cohort], FIVE_TABLES), next(names))
        # As `serving.run.serve_app` does once the app is built: a full collection otherwise
        # walks every object loaded (55-90 ms, in one measured question in three).
        freeze_heap()
        for cohort in cohorts:
            asked = question(COHORTS[cohort], FIVE_TABLES)
            times: Times = {s: [] for s in SITUATIONS}
            for _ in range(reps):
                fresh = next(names)
                times["fresh"].append(await node.measured(asked, fresh))
                times["again"].append(await node.measured(asked, fresh))
                seasoned = next(names)
                for n, (earlier, tables) in enumerate(HISTORY):
                    await node.ask(question(earlier, tables, day=n), seasoned)
                times["after many"].append(await node.measured(asked, seasoned))
                spent = next(names)
                for day in range(5):
                    await node.ask(question(*EXHAUST, day=day), spent)
                times["at the cap"].append(await node.measured(asked, spent))
            results[cohort] = times
    return results


def _applicants() -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield f"applicant-{n}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Row:
    cohort: str
    situation: str
    steps: dict[str, float]  # medians, ms, of `STEPS` and `UNPROTECTED`
    ratio: float  # the goal figure: median of each rep's (ledger + protect) / unprotected
    added: float  # median of each rep's (every step - unprotected) / unprotected
    of_sql: float  # median of each rep's (ledger + protect) / sql (the fresh one's if none)


def summarise(results: dict[str, Times]) -> list[Row]:
    rows = []
    for cohort, times in results.items():
        fresh_sql = median([t["sql"] for t in times["fresh"]])
        for situation, reps in times.items():
            rows.append(
                Row(
                    cohort,
                    situation,
                    steps={name: median([t[name] for t in reps]) for name in (*STEPS, UNPROTECTED)},
                    ratio=median([_protection(t) / t[UNPROTECTED] for t in reps]),
                    added=median([sum(t[s] for s in STEPS) / t[UNPROTECTED] - 1 for t in reps]),
                    of_sql=median([_protection(t) / (t["sql"] or fresh_sql) for t in reps]),
                )
            )
    return rows


def _protection(steps: dict[str, float]) -> float:
    return sum(steps[s] for s in PROTECTION)


async def run(
    report: Report,
    cache: Path,
    *,
    persons: int = 1_000_000,
    reps: int = 5,
    cohorts: Sequence[str] = tuple(COHORTS),
) -> None:
    report.section(
        f"6. The node's protection against its SQL ({persons:,} {JURISDICTION.value} synthetic "
        f"persons, a five-table question; audit-entry step times, medians of {reps} applicants "
        "each; goal: ledger + protect ≤ 10% of the question's SQL run without protection)"
    )
    fed = federation_for(cache, persons)
    await asyncio.to_thread(synthesise, fed)
    work = Path(tempfile.mkdtemp(prefix="tessera-bench-protect-"))
    try:
        results = await measure(fed, work, reps=reps, cohorts=cohorts)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = summarise(results)
    printed = [
        [
            "cohort",
            "situation",
            *(f"{s} ms" for s in (*STEPS, UNPROTECTED)),
            "(ledger+protect)/unprotected",
            "all steps/unprotected - 1",
            "(ledger+protect)/sql",
        ]
    ]
    for row in rows:
        printed.append(
            [
                row.cohort,
                row.situation,
                *(f"{row.steps[s]:.1f}" for s in (*STEPS, UNPROTECTED)),
                f"{row.ratio:.3f}",
                f"{row.added:+.3f}",
                f"{row.of_sql:.3f}",
            ]
        )
        report.add(
            Figure(
                f"node ledger+protect / the question's sql, {row.situation}, {row.cohort}",
                row.ratio,
                "×",
                f"≤ {GOAL:g}×",
                goal_at_most(row.ratio, GOAL),
                ", ".join(f"{s} {row.steps[s]:.1f} ms" for s in (*STEPS, UNPROTECTED))
                + f"; all steps beyond the unprotected statement {row.added:+.3f}×"
                + f"; (ledger+protect)/sql {row.of_sql:.3f}×",
            )
        )
    print(table(printed))
    report.data["protect"] = {cohort: times for cohort, times in results.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.protect", description=__doc__)
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument(
        "--cohort",
        action="append",
        choices=list(COHORTS),
        help="measure only this cohort (may be repeated; default: all)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    cohorts = tuple(args.cohort or COHORTS)
    asyncio.run(run(Report(), CACHE, persons=args.persons, reps=args.reps, cohorts=cohorts))
    print(f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
