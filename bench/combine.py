"""The gateway's combining alone: `python -m bench.combine [--nodes 5] [--queries 200]`.

What the gateway does with its nodes' answers once they are in, for a five-table question
(the total; SEX; AGE_BAND_5; SEX × AGE_BAND_10; AGE_BAND_5 × CALENDAR_YEAR of diabetics
diagnosed in 2015-2025: 370 cells per node, over their full public domains) and a sixth table
by JURISDICTION × SEX (so that `guard_pools` has parts to guard): each node's answer vetted
(`gateway.vetting.vet`), the answers combined (`gateway.combine.combine`) and the pooled
numbers guarded (`gateway.pool_guard.guard_pools`), as `gateway.service` does.

The answers are what connectors release: counts of a synthetic cohort per country through the
connector's own release path (full domains, OpenDP's noise, the country's published
disclosure profile, so small cells are LOW), encoded as `tessera/1` and read back with the
gateway's `gateway.nodes.interpret`. Figure: process CPU per query, the quietest of ten
blocks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from connectors.canonical import question_digest
from connectors.noise import DiscreteGaussian
from connectors.release import draw, full_table, released_table
from gateway.combine import combine
from gateway.federation import NodeInfo
from gateway.nodes import NodeOutcome, interpret
from gateway.pool_guard import guard_pools
from gateway.vetting import vet
from policies.disclosure import CellContext
from policies.domain import table_domain
from policies.loader import load_policy_set
from policies.policy_set import PolicySet
from schema.codes import Dimension, Jurisdiction, MeasureKind, NodeStatus
from schema.query import Breakdown, CohortQuery
from schema.wire import NodeRequest, NodeResponse
from tessera.tokens import demo_approval

GOAL_MS: Final = 5.0
BLOCKS: Final = 10
D = Dimension
NODE_TABLES: Final[list[Breakdown]] = [
    (),
    (D.SEX,),
    (D.AGE_BAND_5,),
    (D.SEX, D.AGE_BAND_10),
    (D.AGE_BAND_5, D.CALENDAR_YEAR),
]
GATEWAY_TABLES: Final[list[Breakdown]] = [*NODE_TABLES, (D.JURISDICTION, D.SEX)]
QUERY: Final = CohortQuery.model_validate(
    {
        "criteria": {
            "conditions": [
                {
                    "vocabulary": "ICD10",
                    "code": "E11",
                    "descendants": True,
                    "window": {"start": "2015-01-01", "end": "2025-12-31"},
                }
            ]
        },
        "tables": [list(t) for t in NODE_TABLES],
        "reference_date": dt.date(2026, 1, 1),
    }
)


@dataclass(frozen=True)
class Answers:
    """The nodes' answers to one question, as the gateway holds them after reading them."""

    outcomes: list[NodeOutcome]
    requests: dict[Jurisdiction, NodeRequest]

    @property
    def cells(self) -> int:
        return sum(
            len(cells)
            for o in self.outcomes
            for tables in o.measures.values()
            for cells in tables.values()
        )


def _counts(rng: random.Random, by: Breakdown, persons: int) -> dict[tuple[str, ...], int]:
    """A cohort of `persons` over the table's domain, unevenly: some cells large, many small,
    a third empty (LOW once released, like diabetics under 30 or over 100 by age band)."""
    domain = table_domain(by, QUERY)
    if not by:
        return {(): persons}
    weights = [rng.paretovariate(1.2) if rng.random() > 0.3 else 0.0 for _ in domain]
    scale = persons / sum(weights)
    return {key: int(w * scale) for key, w in zip(domain, weights, strict=True)}


def answers(nodes: int, policies: PolicySet, *, seed: int = 7) -> Answers:
    rng = random.Random(seed)
    noise = DiscreteGaussian()
    outcomes = []
    requests = {}
    for jurisdiction in list(Jurisdiction)[:nodes]:
        profile = policies.profile(jurisdiction)
        persons = rng.randint(20_000, 60_000)
        full = {
            question_digest(QUERY, by): full_table(by, _counts(rng, by, persons), QUERY)
            for by in NODE_TABLES
        }
        stored = draw(full, profile.sigma, noise)
        context = CellContext(profile, jurisdiction)
        request = NodeRequest(
            query_id=str(uuid.uuid4()),
            request_id="DR-2026-0042",
            jurisdiction=jurisdiction,
            query=QUERY,
            approval=demo_approval([jurisdiction]),
            subject="researcher@bench.tessera.eu",
        )
        response = NodeResponse(
            query_id=request.query_id,
            jurisdiction=jurisdiction,
            status=NodeStatus.OK,
            tables=[
                released_table(
                    by,
                    {MeasureKind.PERSON_COUNT: stored[question_digest(QUERY, by)]},
                    profile.sigma,
                    context,
                )
                for by in NODE_TABLES
            ],
            elapsed_ms=50.0,
        )
        node = NodeInfo(jurisdiction, f"tessera-node-{jurisdiction.value.lower()}", "http://x")
        outcome = interpret(node, request, 200, response.model_dump_json().encode(), 50.0)
        if outcome.status is not NodeStatus.OK:
            raise RuntimeError(f"{jurisdiction.value}: {outcome.message}")
        outcomes.append(outcome)
        requests[jurisdiction] = request
    return Answers(outcomes, requests)


def combined(answered: Answers, policies: PolicySet) -> None:
    """What the gateway does with the answers of one question."""
    vetted = [
        vet(o, policies.profile(o.jurisdiction), answered.requests[o.jurisdiction])
        for o in answered.outcomes
    ]
    if any(o.status is not NodeStatus.OK for o in vetted):
        raise RuntimeError("an honest node's answer was rejected")
    guard_pools(combine(GATEWAY_TABLES, vetted, policies.profile), vetted)


def measure(nodes: int, queries: int) -> tuple[float, int]:
    """(CPU ms per query of the quietest of `BLOCKS` blocks, node cells per query)."""
    policies = load_policy_set()
    answered = answers(nodes, policies)
    for _ in range(10):
        combined(answered, policies)
    per_block = max(1, queries // BLOCKS)
    blocks = []
    for _ in range(BLOCKS):
        started = time.process_time()
        for _ in range(per_block):
            combined(answered, policies)
        blocks.append(1000 * (time.process_time() - started) / per_block)
    return min(blocks), answered.cells


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.combine", description=__doc__)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args(argv)
    cpu, cells = measure(args.nodes, args.queries)
    print(
        f"vet + combine + guard_pools, {args.nodes} nodes × {len(NODE_TABLES)} tables "
        f"({cells:,} node cells): {cpu:.2f} ms CPU per query (goal ≤ {GOAL_MS:g} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
