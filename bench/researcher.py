"""A researcher asking the gateway through its GraphQL endpoint, with an identity token and one
permit per country as the demo sends them, and what they read back.

Each `Applicant` is a researcher and the organisation their permits name: the two budgets a
node's ledger keeps (`schema.approval.ApplicantId`). A fresh one has spent nothing anywhere
and has no stored answers, so it draws noise of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from bench.cohorts import Breakdown, Question
from schema.codes import Dimension, Jurisdiction
from tessera.credentials import Credentials
from tessera.local import LocalFederation


@dataclass(frozen=True, slots=True)
class Applicant:
    researcher: str
    organisation: str

    @classmethod
    def fresh(cls, label: str) -> Applicant:
        tag = uuid.uuid4().hex[:10]
        return cls(f"{label}-{tag}@bench.tessera.eu", f"Bench organisation {label}-{tag}")


@dataclass(frozen=True, slots=True)
class Released:
    """One number as the researcher reads it: a value, or None (LOW below a minimum,
    SUPPRESSED when a pool is incomplete), its status, the noise's sd, and for a count
    pooled securely the jurisdictions in it."""

    value: int | None
    status: str
    sd: float | None
    contributors: tuple[str, ...] | None = None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Released:
        contributors = data.get("contributors")
        return cls(
            data["value"],
            data["status"],
            data["sd"],
            None if contributors is None else tuple(contributors),
        )


@dataclass(frozen=True, slots=True)
class Privacy:
    """A node's privacy line: what the answer cost each person counted, and the applicant's
    worst-case spend (researcher, organisation) against the caps, in zCDP rho."""

    sigma: float
    question_rho: float
    spent_rho: float
    cap_rho: float
    organisation_spent_rho: float | None
    organisation_cap_rho: float | None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Privacy:
        return cls(
            data["sigma"],
            data["questionRho"],
            data["spentRho"],
            data["capRho"],
            data["organisationSpentRho"],
            data["organisationCapRho"],
        )


@dataclass(frozen=True, slots=True)
class NodeAnswer:
    status: str
    count: Released | None
    privacy: Privacy | None


Cells = dict[tuple[str, ...], Released]


@dataclass(frozen=True, slots=True)
class Answer:
    count: Released
    nodes: dict[Jurisdiction, NodeAnswer]
    # Each breakdown's cells, keys in the breakdown's dimension order, in the order listed.
    tables: dict[Breakdown, Cells]

    @classmethod
    def of(cls, question: Question, data: Mapping[str, Any]) -> Answer:
        nodes = {
            Jurisdiction(n["jurisdiction"]): NodeAnswer(
                n["status"],
                # Not selected: the questions ask the pooled count, no country's own.
                None if n.get("count") is None else Released.of(n["count"]),
                None if n["privacy"] is None else Privacy.of(n["privacy"]),
            )
            for n in data["byJurisdiction"]
        }
        tables = {}
        for i, by in enumerate(question.tables):
            table = data[f"t{i}"]
            if tuple(Dimension(d) for d in table["by"]) != by:
                raise AssertionError(f"breakdown t{i} came back as {table['by']}")
            cells = {
                tuple(d["value"] for d in cell["dimensions"]): Released.of(cell["count"])
                for cell in table["cells"]
            }
            if len(cells) != len(table["cells"]):
                raise AssertionError(f"breakdown t{i} lists a cell twice")
            tables[by] = cells
        return cls(Released.of(data["count"]), nodes, tables)

    @property
    def answered(self) -> list[Jurisdiction]:
        """The nodes whose answer the researcher got."""
        return [j for j, n in self.nodes.items() if n.status == "OK"]

    @property
    def rejected(self) -> list[Jurisdiction]:
        return [j for j, n in self.nodes.items() if n.status == "REJECTED"]

    def privacy(self, jurisdiction: Jurisdiction) -> Privacy:
        line = self.nodes[jurisdiction].privacy
        if line is None:
            raise AssertionError(f"{jurisdiction.value} answered without its privacy line")
        return line


def inner_cells(answer: Answer, by: Breakdown) -> dict[tuple[str, ...], int | None]:
    return {key: value.value for key, value in answer.tables[by].items()}


class QuestionFailed(Exception):
    """The gateway answered with errors, or a node did not answer (REJECTED aside)."""


# A node's answer the gateway's vetting found implausible: the researcher gets none of it,
# which is part of what the protection costs them; any other failure is the bench's.
ANSWERED: Final = frozenset({"OK", "REJECTED"})


class Researcher:
    """One applicant's session with the gateway."""

    def __init__(
        self, federation: LocalFederation, applicant: Applicant, session: aiohttp.ClientSession
    ) -> None:
        self.applicant = applicant
        self.url = federation.gateway_url
        self.jurisdictions = list(federation.jurisdictions)
        permits = federation.permits(subject=applicant.researcher, applicant=applicant.organisation)
        self.credentials: Credentials = federation.credentials(
            permits, subject=applicant.researcher
        )
        self.session = session

    async def ask(self, question: Question) -> Answer:
        payload = {"query": question.document()}
        async with self.session.post(
            self.url, json=payload, headers=self.credentials.headers()
        ) as response:
            body: dict[str, Any] = await response.json(content_type=None)
        if body.get("errors") or not body.get("data"):
            raise QuestionFailed(f"{question.label}: {body.get('errors')}")
        answer = Answer.of(question, body["data"]["cohort"])
        failed = {j.value: n.status for j, n in answer.nodes.items() if n.status not in ANSWERED}
        if failed or set(answer.nodes) != set(self.jurisdictions):
            raise QuestionFailed(f"{question.label}: nodes {failed or sorted(answer.nodes)}")
        return answer
