"""The gateway's reading of node answers, alone: `python -m bench.answer_reading`.

Per question, each node's answer bytes checked against `tessera/1` and the question
(`gateway.nodes.interpret`) and recorded for the audit trail with its hash
(`gateway.query_trail.node_step`): what the gateway does with an answer before vetting
it. The answers are `bench.combine`'s (5 nodes × 5 tables over their full domains, noisy
and LOW cells with their reasons) as a node writes them (`model_dump(mode="json")`, every
field), or `--sparse` as `bench.fakenode` writes them (fields at their defaults left out).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Final

import orjson

from bench import combine
from gateway.federation import NodeInfo
from gateway.nodes import interpret
from gateway.query_trail import node_step
from policies.loader import load_policy_set
from policies.reasons import AccessDecision
from schema.codes import NodeStatus
from schema.wire import NodeRequest

BLOCKS: Final = 10


def _sparse(body: bytes) -> bytes:
    """The answer with each value's fields at their defaults left out."""
    answer = orjson.loads(body)
    for table in answer["tables"]:
        for cell in table["cells"]:
            for value in cell["values"].values():
                for name, default in (("reasons", []), ("bound", None), ("contributors", None)):
                    if value.get(name, default) == default:
                        value.pop(name, None)
    return orjson.dumps(answer)


def bodies(nodes: int, *, sparse: bool) -> list[tuple[NodeInfo, NodeRequest, bytes]]:
    """Each node's answer to one question, as bytes, with its node and request."""
    answered = combine.answers(nodes, load_policy_set())
    found = []
    for outcome in answered.outcomes:
        request = answered.requests[outcome.jurisdiction]
        node = NodeInfo(outcome.jurisdiction, f"node-{outcome.jurisdiction.value}", "http://x")
        # The answer as its node wrote it: the model's own JSON of what was read back.
        response = outcome.response
        assert response is not None
        tables = [
            {
                "by": [d.value for d in by],
                "cells": [
                    {
                        "key": list(key),
                        "values": {kind.value: tables[by][key].model_dump(mode="json")},
                    }
                    for key in tables[by]
                ],
            }
            for kind, tables in outcome.measures.items()
            for by in tables
        ]
        body = orjson.dumps({**response.model_dump(mode="json"), "tables": tables})
        found.append((node, request, _sparse(body) if sparse else body))
    return found


def read(answers: Sequence[tuple[NodeInfo, NodeRequest, bytes]]) -> None:
    for node, request, body in answers:
        outcome = interpret(node, request, 200, body, 1.0)
        if outcome.status is not NodeStatus.OK:
            raise RuntimeError(f"{node.jurisdiction.value}: {outcome.message}")
        node_step(outcome, AccessDecision(jurisdiction=node.jurisdiction, allowed=True))


def measure(nodes: int, queries: int, *, sparse: bool) -> tuple[list[float], int]:
    """(CPU ms per question of each of `BLOCKS` blocks, answer bytes per question)."""
    answers = bodies(nodes, sparse=sparse)
    for _ in range(10):
        read(answers)
    per_block = max(1, queries // BLOCKS)
    blocks = []
    for _ in range(BLOCKS):
        started = time.process_time()
        for _ in range(per_block):
            read(answers)
        blocks.append(1000 * (time.process_time() - started) / per_block)
    return blocks, sum(len(body) for _, _, body in answers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.answer_reading", description=__doc__)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--sparse", action="store_true")
    args = parser.parse_args(argv)
    blocks, size = measure(args.nodes, args.queries, sparse=args.sparse)
    blocks.sort()
    print(
        f"read {args.nodes} answers ({size:,} bytes{', sparse' if args.sparse else ''}): "
        f"{blocks[0]:.3f} ms min, {blocks[len(blocks) // 2]:.3f} ms median CPU per question"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
