"""`tessera demo`: a local European federation answering real queries.

Synthesises an OMOP database per country, starts one connector per country and the gateway on
loopback, writes a researcher token, runs the example queries and prints the answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from schema.codes import Jurisdiction
from tessera.local import LocalFederation
from tessera.report import render_response
from tessera.tokens import demo_approval

DEFAULT_JURISDICTIONS = (Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK)


async def post_graphql(
    session: aiohttp.ClientSession, url: str, token: str, query: str
) -> dict[str, Any]:
    async with session.post(
        url,
        json={"query": query},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        body: dict[str, Any] = await response.json(content_type=None)
        return body


def example_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.graphql"))


async def run_examples(federation: LocalFederation, examples: Sequence[Path]) -> bool:
    """Run each example query; print its answer. True when every query answered."""
    token = federation.token_file.read_text().strip()
    ok = True
    async with aiohttp.ClientSession() as session:
        for path in examples:
            started = time.perf_counter()
            response = await post_graphql(session, federation.gateway_url, token, path.read_text())
            elapsed_ms = (time.perf_counter() - started) * 1000
            print(render_response(f"{path.name}  ({elapsed_ms:.0f} ms)", response))
            print()
            ok = ok and not response.get("errors") and bool(response.get("data"))
    return ok


POLICY_QUESTION = """{ cohort(request: "DR-2026-0042",
  criteria: { conditions: [{ vocabulary: ICD10, code: "I10" }] }) {
    count { value status reasons { rule jurisdiction message } }
    byJurisdiction { jurisdiction status count { value status }
                     reasons { rule jurisdiction message article } }
} }"""


async def run_policy_examples(federation: LocalFederation) -> bool:
    """The same question under two other approvals: one that covers only two countries (the
    others are DENIED, the two answer) and one for a use the EHDS prohibits (all DENIED)."""
    covered = list(federation.jurisdictions[:2])
    cases = [
        (
            f"allowed for {', '.join(j.value for j in covered)} only (approval scope)",
            federation.mint(demo_approval(covered)),
        ),
        (
            "refused: advertising and marketing (EHDS Art. 54)",
            federation.mint(
                demo_approval(federation.jurisdictions, purpose="advertising_marketing")
            ),
        ),
    ]
    ok = True
    async with aiohttp.ClientSession() as session:
        for title, token in cases:
            response = await post_graphql(session, federation.gateway_url, token, POLICY_QUESTION)
            print(render_response(f"policy in action: {title}", response))
            print()
            ok = ok and not response.get("errors")
    return ok


def banner(federation: LocalFederation) -> str:
    token_path = federation.token_file
    query = '{"query": "{ jurisdictions { code nodeId minCount } }"}'
    return "\n".join(
        [
            "Tessera demo federation is up:",
            f"  gateway   {federation.gateway_url}  (GraphiQL in a browser)",
            *(
                f"  node {j.value}   {federation.node_url(j)}  ({federation.database(j).name})"
                for j in federation.jurisdictions
            ),
            f"  token     {token_path}  (compliance: {federation.compliance_token_file.name})",
            f"  logs      {federation.logs_dir}",
            f"  audit     {federation.gateway_audit_db}  (and one trail per node beside it)",
            "",
            "Try it:",
            f"  curl -s {federation.gateway_url} -H 'content-type: application/json' \\",
            f'    -H "authorization: Bearer $(cat {token_path})" \\',
            f"    -d '{query}'",
            "Check the gateway's audit trail:",
            f"  tessera audit verify --db {federation.gateway_audit_db} "
            f"--key {federation.gateway_key.public_key}",
            "",
        ]
    )


async def wait_for_interrupt() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def run_demo(
    directory: Path,
    *,
    persons: int,
    seed: int,
    jurisdictions: Sequence[Jurisdiction],
    gateway_port: int,
    examples_dir: Path,
    smoke: bool,
) -> int:
    federation = LocalFederation(
        directory=directory,
        jurisdictions=jurisdictions,
        persons=persons,
        seed=seed,
        gateway_port=gateway_port,
    )
    federation.prepare(progress=True)
    try:
        await federation.start()
        print(banner(federation))
        answered = await run_examples(federation, example_files(examples_dir))
        answered = await run_policy_examples(federation) and answered
        if smoke:
            return 0 if answered else 1
        print("Serving until Ctrl-C.")
        await wait_for_interrupt()
        return 0
    finally:
        with contextlib.suppress(Exception):
            federation.stop()
