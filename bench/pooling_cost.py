"""What secure pooling costs per question: the extra time at each node and at the gateway for
a 5-node, 5-table question, measured two ways.

    .venv/bin/python -m bench.pooling_cost [--rounds 200] [--questions 15] [--persons 20000]

1. In process, the code each side runs for a pooled round and not for a national one
   (CPU time, median over `--rounds` rounds): at a node, checking the round and deriving the
   pairwise secrets, recording the nonce (an fsync'd SQLite write), drawing the shares and
   masking them, encoding them; at the gateway, decoding and checking every node's shares,
   adding them up and releasing the pooled cells (against summing released parts).
2. End to end, five real connectors (FR, DE, FI, DK, NL) behind two gateways, one whose
   federation file lets the nodes pool and one that does not: the same new questions (a total
   and four breakdowns without JURISDICTION) asked alternately of both, median latency.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from connectors.answers import SqliteAnswers, StoredTable
from connectors.masking import pair_secret
from connectors.noise import DiscreteGaussian
from connectors.pooling import PooledPart
from gateway.combine import pool, secure_cell
from gateway.pooling import Pooling, SecurePool
from policies.disclosure import GATEWAY_RULES, CellContext, protect, release
from policies.domain import table_domain
from policies.loader import load_policy_set
from policies.profiles import strictest
from schema.codes import Dimension, Jurisdiction, MeasureKind
from schema.pooling import PooledAnswer, PoolingRequest, encode_nonce, pooled_sum
from schema.query import Breakdown, CohortQuery, Criteria, EventCriterion

NODES = (Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK, Jurisdiction.NL)
SEX, AGE10, AGE20 = Dimension.SEX, Dimension.AGE_BAND_10, Dimension.AGE_BAND_20
TABLES: tuple[Breakdown, ...] = ((), (SEX,), (AGE10,), (SEX, AGE10), (AGE20,))
QUERY = CohortQuery(
    criteria=Criteria(conditions=[EventCriterion(vocabulary="ICD10", code="E11")]),
    reference_date="2026-01-01",
    tables=list(TABLES),
)
NODE_IDS = sorted(f"tessera-node-{j.value.lower()}" for j in NODES)
KEYS = {
    n: X25519PrivateKey.from_private_bytes(hashlib.sha256(n.encode()).digest()) for n in NODE_IDS
}


def median_ms(run: Callable[[], Any], rounds: int, *, wall: bool = False) -> float:
    """CPU time (wall clock with `wall`, for what waits on the disk) of `run`, median."""
    clock = time.perf_counter if wall else time.process_time
    times = []
    for _ in range(rounds):
        started = clock()
        run()
        times.append((clock() - started) * 1000)
    return statistics.median(times)


def request() -> PoolingRequest:
    return PoolingRequest(
        nonce=encode_nonce(np.random.default_rng().bytes(32)),
        round=1,
        participants=NODE_IDS,
        sigma=5.0,
        tables=list(TABLES),
        national=[()],
    )


def in_process(rounds: int) -> dict[str, float]:
    noise = DiscreteGaussian()
    me = NODE_IDS[0]
    rng = np.random.default_rng(1)
    counts = {
        by: {tuple(k): int(rng.integers(0, 500)) for k in table_domain(by, QUERY)} for by in TABLES
    }
    cells = sum(len(c) for c in counts.values())

    def secrets() -> dict[str, bytes]:
        return {p: pair_secret(KEYS[me], KEYS[p].public_key()) for p in NODE_IDS if p != me}

    cached = secrets()

    def part() -> PooledPart:
        return PooledPart.of(
            request(), node_id=me, secrets=cached, query=QUERY, owner="bench", release="1"
        )

    def draw_and_mask() -> None:
        p = part()
        stored = p.draw({p.shelved[by]: counts[by] for by in TABLES}, noise)
        PooledAnswer.of(p.pooling, p.masked(stored)).model_dump_json()

    def draw_national() -> None:
        for by in TABLES:
            keys = list(counts[by])
            StoredTable(
                dict(zip(keys, noise.draw([counts[by][k] for k in keys], 5.0), strict=True))
            )

    with tempfile.TemporaryDirectory() as directory:
        answers = SqliteAnswers(Path(directory) / "answers.sqlite3")
        loop = asyncio.new_event_loop()
        try:
            nonce_ms = median_ms(
                lambda: loop.run_until_complete(answers.first_use(request().nonce)),
                rounds,
                wall=True,
            )
            loop.run_until_complete(answers.close())
        finally:
            loop.close()

    # The gateway: five nodes' masked vectors of every table, as decoded from the wire.
    vectors = {
        by: [np.random.default_rng(i).integers(0, 2**63, len(counts[by]), dtype=np.uint64)
             for i in range(len(NODES))]
        for by in TABLES
    }  # fmt: skip
    policies = load_policy_set()
    profile = strictest(policies.profile(j) for j in NODES)
    context = CellContext(profile, None)
    answers_json = [
        PooledAnswer.of(request(), {by: vectors[by][i] for by in TABLES}).model_dump_json()
        for i in range(len(NODES))
    ]

    def unmask_and_release() -> None:
        decoded = [PooledAnswer.model_validate_json(a) for a in answers_json]
        for answer in decoded:
            for table in answer.tables:
                table.values()
        for by in TABLES:
            sums = pooled_sum(vectors[by])
            keys = table_domain(by, QUERY)
            cells = dict(zip(keys, [int(v) % 1000 for v in sums.tolist()], strict=True))
            pooling = Pooling(
                tables=(by,),
                domains={by: tuple(keys)},
                pool=SecurePool(
                    contributors=NODES,
                    sigma=5.0,
                    cells={by: cells},
                    measure=MeasureKind.PERSON_COUNT,
                ),
            )
            for key in keys:
                secure_cell(by, key, {}, pooling, context)

    released = {
        by: {key: [(j, release(counts[by][key] + 20, 5.0, context)) for j in NODES] for key in keys}
        for by in TABLES
        if (keys := table_domain(by, QUERY))
    }

    def sum_released_parts() -> None:
        for cells in released.values():
            for parts in cells.values():
                protect(pool(parts), context, GATEWAY_RULES)

    return {
        "cells": float(cells),
        "node: pairwise secrets, first round (4 X25519)": median_ms(secrets, rounds),
        "node: record the nonce (SQLite, fsync; wall clock)": nonce_ms,
        "node: draw shares, mask, encode (5 tables)": median_ms(draw_and_mask, rounds),
        "node: draw national noise instead (5 tables)": median_ms(draw_national, rounds),
        "gateway: decode, add up, release (5 nodes × 5 tables)": median_ms(
            unmask_and_release, rounds
        ),
        "gateway: sum released parts instead": median_ms(sum_released_parts, rounds),
    }


def end_to_end(persons: int, questions: int) -> dict[str, list[float]]:
    from tessera.local import LocalFederation, policies_with_rate_limits
    from tessera.processes import Service, free_port
    from tests.integration.federation_kit import post

    directory = Path(tempfile.mkdtemp(prefix="tessera-pooling-cost-"))
    fed = LocalFederation(
        directory=directory,
        jurisdictions=NODES,
        persons=persons,
        seed=7,
        gateway_port=free_port(),
        node_ports=[free_port() for _ in NODES],
        console=False,
        policies=policies_with_rate_limits(directory / "policies", per_minute=10**5, per_day=10**6),
    )
    fed.prepare(progress=True)
    plain = fed.federation_file.with_name("federation-no-pooling.toml")
    plain.write_text(fed.federation_file.read_text().replace("pools = true\n", ""))
    other = fed.gateway_service(port=free_port(), name="gateway without pooling")
    other = Service(
        name=other.name,
        args=[str(plain) if a == str(fed.federation_file) else a for a in other.args],
        base_url=other.base_url,
        log_path=other.log_path,
        env=other.env,
    )
    fed.supervisor.add(other)
    try:
        asyncio.run(fed.start())
        urls = {"pooled": fed.gateway_url, "national": f"{other.base_url}/graphql"}
        timings: dict[str, list[float]] = {way: [] for way in urls}
        for i in range(questions):
            for way, url in urls.items():
                # A new applicant each time: a budget of its own, no stored answers.
                subject = f"bench-{way}-{i}@demo.tessera.eu"
                permits = fed.permits(subject=subject, applicant=f"Bench {way} {i}")
                credentials = fed.credentials(permits, subject=subject)
                started = time.perf_counter()
                _, body = post(url, {"query": QUESTION}, credentials)
                timings[way].append((time.perf_counter() - started) * 1000)
                assert "errors" not in body, body.get("errors")
        return timings
    finally:
        fed.stop()


TABLE_FIELDS = " ".join(
    f"t{i}: breakdown(by: [{', '.join(d.value for d in by)}]) {{ cells {{ count {{ value }} }} }}"
    for i, by in enumerate(TABLES)
    if by
)
QUESTION = (
    '{ cohort(request: "DR-2026-0042", referenceDate: "2026-01-01", '
    'criteria: { conditions: [{ vocabulary: ICD10, code: "E11" }] }) '
    f"{{ count {{ value }} byJurisdiction {{ status }} {TABLE_FIELDS} }} }}"
)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--questions", type=int, default=15)
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--skip-end-to-end", action="store_true")
    args = parser.parse_args(argv)
    figures = in_process(args.rounds)
    cells = figures.pop("cells")
    print(f"in process, CPU ms per question, median of {args.rounds} ({cells:.0f} cells):")
    for name, ms in figures.items():
        print(f"  {name:<58} {ms:8.3f}")
    if args.skip_end_to_end:
        return
    timings = end_to_end(args.persons, args.questions)
    print(
        f"\nend to end, 5 nodes of {args.persons:,} persons, {args.questions} new questions each:"
    )
    for way, values in timings.items():
        print(f"  {way:<10} median {statistics.median(values):7.1f} ms, "
              f"p90 {sorted(values)[int(0.9 * (len(values) - 1))]:7.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
