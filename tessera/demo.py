"""`tessera demo`: a local European federation answering real queries.

Synthesises an OMOP database per country, starts one connector per country and the gateway on
loopback, writes the researcher's identity token and one permit per country (each signed by
that country's own HDAB), runs the example queries and prints the answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import re
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from schema.codes import Jurisdiction
from schema.wire import PERMIT_HEADER
from tessera.credentials import Credentials
from tessera.local import LocalFederation
from tessera.locations import DEMO_DIRECTORY
from tessera.report import render_response
from tessera.tokens import DEMO_APPLICATION

DEFAULT_JURISDICTIONS = (Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK)


async def post_graphql(
    session: aiohttp.ClientSession, url: str, credentials: Credentials, query: str
) -> dict[str, Any]:
    async with session.post(url, json={"query": query}, headers=credentials.headers()) as response:
        body: dict[str, Any] = await response.json(content_type=None)
        return body


def packaged_examples() -> Path:
    """The example questions shipped inside the package (`tessera/examples`), so that the
    demo finds them wherever it runs, in the repository or from an installed wheel."""
    return Path(str(importlib.resources.files("tessera") / "examples"))


def example_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.graphql"))


# `# asked by: ORGANISATION (SUBJECT)` in an example's leading comment names the study team
# that asks it. Each study has a privacy budget of its own, as it would in a real federation:
# one researcher asking every study's questions would spend through the cap by the later
# examples, and the persons who reached it would drop out of their answers.
_ASKED_BY = re.compile(
    r"^# asked by: (?P<organisation>[^()]+?) \((?P<subject>[^()\s]+)\)\s*$", re.MULTILINE
)


@dataclass(frozen=True, slots=True)
class Asker:
    organisation: str
    subject: str


def asked_by(question: str) -> Asker | None:
    """The study team an example names in its leading comment, if it names one."""
    found = _ASKED_BY.search(question)
    return None if found is None else Asker(found["organisation"], found["subject"])


def credentials_for(federation: LocalFederation, asker: Asker | None) -> Credentials:
    """The asker's identity and a permit per member naming its organisation as applicant; the
    demo researcher's own credentials (as on disk) for an example that names nobody."""
    if asker is None:
        return federation.researcher()
    permits = federation.permits(subject=asker.subject, applicant=asker.organisation)
    return federation.credentials(permits, subject=asker.subject)


async def run_examples(federation: LocalFederation, examples: Sequence[Path]) -> bool:
    """Run each example query, as the study team it names; print its answer. True when every
    query answered."""
    ok = True
    async with aiohttp.ClientSession() as session:
        for path in examples:
            question = path.read_text()
            asker = asked_by(question)
            credentials = credentials_for(federation, asker)
            started = time.perf_counter()
            response = await post_graphql(session, federation.gateway_url, credentials, question)
            elapsed_ms = (time.perf_counter() - started) * 1000
            who = "" if asker is None else f", asked by {asker.organisation}"
            print(render_response(f"{path.name}  ({elapsed_ms:.0f} ms{who})", response))
            print()
            ok = ok and not response.get("errors") and bool(response.get("data"))
    return ok


POLICY_QUESTION = (
    f'{{ cohort(request: "{DEMO_APPLICATION}",'
    """
  criteria: { conditions: [{ vocabulary: ICD10, code: "I10" }] }) {
    count { value status sd reasons { rule jurisdiction message } }
    byJurisdiction { jurisdiction status count { value status sd }
                     reasons { rule jurisdiction message article }
                     privacy { questionRho spentRho capRho } }
} }"""
)


async def run_policy_examples(federation: LocalFederation) -> bool:
    """One question under the researcher's permits: answered with every country's permit;
    with one permit left out (that country is DENIED, PERMIT_MISSING, the others answer);
    and under permits for a use the EHDS prohibits (every country DENIED)."""
    researcher = federation.researcher()
    left_out = federation.jurisdictions[-1]
    cases = [
        (f"answered with {len(researcher.permits)} permits, one per HDAB", researcher),
        (
            f"{left_out.value}'s permit missing: {left_out.value} is DENIED, the others answer",
            researcher.without(federation.permit_file(left_out).read_text().strip()),
        ),
        (
            "refused: permits for advertising and marketing (EHDS Art. 54)",
            federation.credentials(federation.permits(purpose="advertising_marketing")),
        ),
    ]
    ok = True
    async with aiohttp.ClientSession() as session:
        for title, credentials in cases:
            response = await post_graphql(
                session, federation.gateway_url, credentials, POLICY_QUESTION
            )
            print(render_response(f"policy in action: {title}", response))
            print()
            ok = ok and not response.get("errors")
    return ok


def banner(federation: LocalFederation) -> str:
    token_path = federation.token_file
    # The client and `tessera query` find the demo in .tessera/demo by themselves.
    default = federation.directory == DEMO_DIRECTORY
    demo_dir = "" if default else f" --demo-dir {federation.directory}"
    client_dir = "" if default else repr(str(federation.directory))
    query = (
        f'{{"query": "{{ cohort(request: \\"{DEMO_APPLICATION}\\", criteria: {{ sex: FEMALE }}) '
        '{ count { value status } byJurisdiction { jurisdiction status } } }"}'
    )
    permits = [
        f'    -H "{PERMIT_HEADER.lower()}: $(cat {federation.permit_file(j)})" \\'
        for j in federation.members
    ]
    return "\n".join(
        [
            "Tessera demo federation is up:",
            f"  gateway   {federation.gateway_url}",
            f"  console   {federation.console_url}  (open it in a browser: the demo's "
            "credentials are pre-filled)",
            *(
                f"  node {j.value}   {federation.node_url(j)}  ({federation.database(j).name})"
                for j in federation.jurisdictions
            ),
            f"  token     {token_path}  (compliance: {federation.compliance_token_file.name})",
            f"  permits   {federation.permits_dir}/  (one per HDAB: "
            + ", ".join(federation.permit_file(j).name for j in federation.members)
            + ")",
            f"  logs      {federation.logs_dir}",
            f"  audit     {federation.gateway_audit_db}  (and one trail per node beside it)",
            "",
            "Try it (your identity, then one permit per country):",
            f"  curl -s {federation.gateway_url} -H 'content-type: application/json' \\",
            f'    -H "authorization: Bearer $(cat {token_path})" \\',
            *permits,
            f"    -d '{query}'",
            "Or from a terminal, or from Python (a pandas DataFrame):",
            f"  tessera query --concept ICD10:E11 --by SEX,AGE_BAND_10{demo_dir}",
            f"  from tessera.client import Client; Client.demo({client_dir}).cohort("
            'concepts=["ICD10:E11"], by=["SEX"]).frame()',
            "Check the gateway's audit trail (against the heads its log kept too):",
            f"  tessera audit verify --db {federation.gateway_audit_db} "
            f"--key {federation.gateway_key.public_key} "
            f"--heads {federation.logs_dir / 'gateway.log'}",
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
