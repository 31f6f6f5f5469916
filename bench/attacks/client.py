"""The attacker's side of the public GraphQL endpoint: an applicant with approved data
requests, asking cohort questions and reading every number released.

The client asks only for fields the running gateway has: it reads the exported schema
(`schema/schema.graphql`) at start-up, so the same attacks run whether counts carry `sd`,
nodes report what an answer cost (`privacy`), or neither. A null value is withheld whatever
its status says; a `DENIED` node is kept with its reasons (it is information too).
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final

from graphql import (
    GraphQLEnumType,
    GraphQLObjectType,
    GraphQLSchema,
    build_schema,
    get_named_type,
    is_leaf_type,
)

import schema as schema_package
from bench.attacks.where import REFERENCE_DATE, Where
from schema.approval import Approval
from schema.codes import Dimension, Jurisdiction
from tessera.credentials import Credentials
from tessera.local import LocalFederation

SDL: Final = Path(schema_package.__file__).resolve().parent / "schema.graphql"

Key = tuple[str, ...]
Breakdown = tuple[Dimension, ...]


class BudgetExhausted(Exception):
    """The service refused a question for the applicant's allowance (RATE_LIMITED)."""


class QuestionRefused(Exception):
    """The gateway refused a question outright (a GraphQL error other than the allowance)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Features:
    """What the running gateway's schema offers."""

    count_fields: tuple[str, ...]  # leaves of Count besides value and status
    statuses: frozenset[str]
    privacy_fields: tuple[str, ...]  # leaves of NodeResult.privacy; empty: not reported
    cohort_arguments: frozenset[str]

    @property
    def has_sd(self) -> bool:
        return "sd" in self.count_fields

    @property
    def has_low(self) -> bool:
        return "LOW" in self.statuses


def _leaves(type_: GraphQLObjectType) -> tuple[str, ...]:
    return tuple(name for name, f in type_.fields.items() if is_leaf_type(get_named_type(f.type)))


@cache
def features(sdl: Path = SDL) -> Features:
    parsed: GraphQLSchema = build_schema(sdl.read_text())
    count = parsed.get_type("Count")
    node = parsed.get_type("NodeResult")
    status = parsed.get_type("ValueStatus")
    query = parsed.query_type
    assert isinstance(count, GraphQLObjectType)
    assert isinstance(node, GraphQLObjectType)
    assert isinstance(status, GraphQLEnumType)
    assert query is not None
    privacy: tuple[str, ...] = ()
    if "privacy" in node.fields:
        privacy_type = get_named_type(node.fields["privacy"].type)
        if isinstance(privacy_type, GraphQLObjectType):
            privacy = _leaves(privacy_type)
    return Features(
        count_fields=tuple(name for name in _leaves(count) if name not in ("value", "status")),
        statuses=frozenset(status.values),
        privacy_fields=privacy,
        cohort_arguments=frozenset(query.fields["cohort"].args),
    )


@dataclass(frozen=True, slots=True)
class Released:
    """One released count, as the attacker reads it."""

    value: int | None
    status: str
    rules: frozenset[str] = frozenset()
    sd: float | None = None
    bound: float | None = None

    @property
    def withheld(self) -> bool:
        return self.value is None

    @property
    def variance(self) -> float:
        """The variance of the released value around the truth, as far as the attacker can
        tell: the stated sd, else a uniform error over ±bound, else none (exact)."""
        if self.sd is not None:
            return self.sd**2
        if self.bound:
            return self.bound**2 / 3
        return 0.0

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Released:
        value = data.get("value")
        return cls(
            value=None if value is None else int(value),
            status=str(data["status"]),
            rules=frozenset(r["rule"] for r in data.get("reasons") or ()),
            sd=data.get("sd"),
            bound=data.get("bound"),
        )


@dataclass(frozen=True, slots=True)
class NodeAnswer:
    jurisdiction: Jurisdiction
    status: str  # OK, DENIED, TIMEOUT, ...
    rules: frozenset[str]
    count: Released | None
    privacy: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Answer:
    """Everything one question released: the pooled count, each node's part and the
    breakdowns asked, cells by their dimension values (a cell not listed was not released)."""

    pooled: Released
    nodes: Mapping[Jurisdiction, NodeAnswer]
    tables: Mapping[Breakdown, Mapping[Key, Released]]

    def node(self, jurisdiction: Jurisdiction) -> Released | None:
        """The node's count when the node answered (None when it did not: DENIED, failed)."""
        node = self.nodes.get(jurisdiction)
        return None if node is None or node.status != "OK" else node.count

    def denied(self, jurisdiction: Jurisdiction) -> bool:
        node = self.nodes.get(jurisdiction)
        return node is not None and node.status == "DENIED"


def _alias(by: Breakdown) -> str:
    return "t_" + "_".join(d.value.lower() for d in by) if by else "t_total"


@dataclass
class Applicant:
    """One researcher of one organisation, with approved applications: each application is a
    permit per jurisdiction, every permit signed by that jurisdiction's own HDAB, under a data
    request id of its own. Counts every question asked, per application.

    `organisations` names, per application, the organisation its permits name (default: the
    applicant's own): one researcher may ask for several."""

    federation: LocalFederation
    researcher: str
    organisation: str
    approvals: Sequence[str]  # application ids
    jurisdictions: Sequence[Jurisdiction]
    organisations: Mapping[str, str] = field(default_factory=dict)
    asked: dict[str, int] = field(default_factory=dict)
    _credentials: dict[str, Credentials] = field(default_factory=dict)
    _connection: http.client.HTTPConnection | None = None
    privacy: dict[Jurisdiction, Mapping[str, Any]] = field(default_factory=dict)
    # What the protection looked like: every status seen, and nodes refused.
    statuses: set[str] = field(default_factory=set)
    node_statuses: dict[str, int] = field(default_factory=dict)

    @property
    def questions(self) -> int:
        return sum(self.asked.values())

    def permit(self, application: str, jurisdiction: Jurisdiction) -> Approval:
        """What `jurisdiction`'s HDAB grants for its part of `application`."""
        return self.federation.permit_approval(
            jurisdiction,
            request_id=f"{application}-{jurisdiction.value}",
            application_id=application,
            applicant=self.organisations.get(application, self.organisation),
        )

    def credentials(self, application: str) -> Credentials:
        """The researcher's identity token and the application's permits: the one place that
        decides what a question travels with."""
        if application not in self._credentials:
            permits = [
                self.federation.permit(j, self.permit(application, j), subject=self.researcher)
                for j in self.jurisdictions
            ]
            self._credentials[application] = Credentials.of(
                self.federation.identity(self.researcher), permits
            )
        return self._credentials[application]

    def ask(
        self,
        where: Where,
        *,
        jurisdictions: Sequence[Jurisdiction] | None = None,
        tables: Sequence[Breakdown] = (),
        approval: int = 0,
    ) -> Answer:
        """One question, under the `approval`-th application."""
        application = self.approvals[approval]
        wanted = features()
        count = " ".join(("value", "status", *wanted.count_fields, "reasons { rule }"))
        privacy = (
            f" privacy {{ {' '.join(wanted.privacy_fields)} }}" if wanted.privacy_fields else ""
        )
        where_j = (
            f", jurisdictions: [{', '.join(j.value for j in jurisdictions)}]"
            if jurisdictions
            else ""
        )
        index = "" if where.index is None else f", index: {where.index.graphql()}"
        breakdowns = "".join(
            f" {_alias(by)}: breakdown(by: [{', '.join(d.value for d in by)}]) "
            f"{{ cells {{ dimensions {{ value }} count {{ {count} }} }} }}"
            for by in tables
        )
        query = (
            # Ages at the reference date: the truth (`bench.truth`) takes them there.
            f'{{ cohort(request: "{application}", referenceDate: "{REFERENCE_DATE.isoformat()}"'
            f", ageAt: REFERENCE_DATE{where_j}{index}, criteria: {where.graphql()}) "
            f"{{ count {{ {count} }} byJurisdiction {{ jurisdiction status reasons {{ rule }} "
            f"count {{ {count} }}{privacy} }}{breakdowns} }} }}"
        )
        result = self._answered(application, query)["cohort"]
        nodes = {}
        for node in result["byJurisdiction"]:
            j = Jurisdiction(node["jurisdiction"])
            spend = node.get("privacy")
            if spend:
                self.privacy[j] = spend
            nodes[j] = NodeAnswer(
                jurisdiction=j,
                status=node["status"],
                rules=frozenset(r["rule"] for r in node.get("reasons") or ()),
                count=None if node.get("count") is None else Released.parse(node["count"]),
                privacy=spend,
            )
        answer = Answer(
            pooled=Released.parse(result["count"]),
            nodes=nodes,
            tables={
                by: {
                    tuple(d["value"] for d in cell["dimensions"]): Released.parse(cell["count"])
                    for cell in result[_alias(by)]["cells"]
                }
                for by in tables
            },
        )
        self._note(answer)
        return answer

    def summary(
        self, where: Where, variable: str, jurisdiction: Jurisdiction, *, approval: int = 0
    ) -> dict[str, Any] | None:
        """One node's summary of a numeric variable (GraphQL `VariableInput`, as text) over
        `where`: its `n` and `mean` as released, or None when the node did not answer."""
        application = self.approvals[approval]
        query = (
            f'{{ cohort(request: "{application}", referenceDate: "{REFERENCE_DATE.isoformat()}"'
            f", ageAt: REFERENCE_DATE, jurisdictions: [{jurisdiction.value}], "
            f"criteria: {where.graphql()}, variable: {variable}) "
            "{ byJurisdiction { jurisdiction status privacy { sigma questionRho spentRho capRho } "
            "summary { n { value status sd } mean { value status sd } } } } }"
        )
        cohort = self._answered(application, query)["cohort"]
        return self._node_part(cohort, jurisdiction, "summary", lambda found: found["n"])

    def regression(
        self, index: str, where: Where, model: str, jurisdiction: Jurisdiction, *, approval: int = 0
    ) -> tuple[dict[str, Any] | None, str]:
        """A regression (GraphQL `RegressionModelInput`, as text) over `where` with `index`, at
        one node: the fit as released, or None with the refusal's message."""
        application = self.approvals[approval]
        query = (
            f'{{ regression(request: "{application}", '
            f'referenceDate: "{REFERENCE_DATE.isoformat()}", ageAt: REFERENCE_DATE, '
            f"jurisdictions: [{jurisdiction.value}], index: {index}, "
            f"criteria: {where.graphql()}, model: {model}) "
            "{ converged iterations coefficients { name estimate se noiseSd } "
            "byJurisdiction { jurisdiction n { value status } } reasons { rule } } }"
        )
        try:
            fitted: dict[str, Any] = self._answered(application, query)["regression"]
        except QuestionRefused as refused:
            return None, str(refused)
        return fitted, ""

    def rate(
        self, where: Where, outcome: str, jurisdiction: Jurisdiction, *, approval: int = 0
    ) -> dict[str, Any] | None:
        """One node's incidence rate over `where` (its index event asked beside it) for the
        outcome (GraphQL `OutcomeInput`, as text): its `events` and `personYears` as
        released, or None when the node did not answer."""
        application = self.approvals[approval]
        index = "" if where.index is None else f", index: {where.index.graphql()}"
        query = (
            f'{{ cohort(request: "{application}", referenceDate: "{REFERENCE_DATE.isoformat()}"'
            f", ageAt: REFERENCE_DATE, jurisdictions: [{jurisdiction.value}]{index}, "
            f"criteria: {where.graphql()}, outcome: {outcome}) "
            "{ byJurisdiction { jurisdiction status privacy { sigma questionRho spentRho capRho } "
            "rate { events { value status sd } personYears { value status sd } } } } }"
        )
        cohort = self._answered(application, query)["cohort"]
        return self._node_part(cohort, jurisdiction, "rate", lambda found: found["personYears"])

    def survival(
        self, where: Where, follow_up: str, jurisdiction: Jurisdiction, *, approval: int = 0
    ) -> list[Released] | None:
        """One node's events per interval of follow-up (GraphQL `SurvivalInput`, as text)
        from `where`'s index event, over `where`'s whole cohort, as released (a withheld one
        LOW), or None when the node did not answer."""
        application = self.approvals[approval]
        assert where.index is not None  # survival follows persons from an index event
        query = (
            f'{{ cohort(request: "{application}", referenceDate: "{REFERENCE_DATE.isoformat()}"'
            f", ageAt: REFERENCE_DATE, jurisdictions: [{jurisdiction.value}], "
            f"index: {where.index.graphql()}, criteria: {where.graphql()}, "
            f"survival: {follow_up}) "
            "{ byJurisdiction { jurisdiction status privacy { sigma questionRho spentRho capRho } }"
            " survival { curves { jurisdiction dimensions { value } "
            "steps { events { value status sd } } } } } }"
        )
        cohort = self._answered(application, query)["cohort"]
        for node in cohort["byJurisdiction"]:
            self.node_statuses[node["status"]] = self.node_statuses.get(node["status"], 0) + 1
            if node.get("privacy"):
                self.privacy[Jurisdiction(node["jurisdiction"])] = node["privacy"]
        for curve in cohort["survival"]["curves"]:
            if curve["jurisdiction"] == jurisdiction.value and not curve["dimensions"]:
                events = [Released.parse(step["events"]) for step in curve["steps"]]
                self.statuses.update(e.status for e in events)
                return events
        return None

    def followed(
        self, where: Where, follow_up: str, *, by_country: bool, approval: int = 0
    ) -> dict[Jurisdiction | None, tuple[float, float]]:
        """The persons at risk at the start of a survival question's curves over `where`'s
        whole cohort (the sum of its exit cells, a withheld one at half the minimum), asked of
        every country: each country's (`by_country`) and the pooled one (None; pooled
        securely without `by_country`), each with the variance of its noise. A curve with nothing
        released from its start is left out."""
        application = self.approvals[approval]
        assert where.index is not None  # survival follows persons from an index event
        asked = f", byCountry: {str(by_country).lower()} }}"
        survival = follow_up.rstrip().removesuffix("}") + asked
        query = (
            f'{{ cohort(request: "{application}", referenceDate: "{REFERENCE_DATE.isoformat()}"'
            f", ageAt: REFERENCE_DATE, index: {where.index.graphql()}, "
            f"criteria: {where.graphql()}, survival: {survival}) "
            "{ byJurisdiction { jurisdiction status privacy { sigma questionRho spentRho capRho } }"
            " survival { curves { jurisdiction dimensions { value } "
            "steps { atRisk { value status sd } } } } } }"
        )
        cohort = self._answered(application, query)["cohort"]
        for node in cohort["byJurisdiction"]:
            self.node_statuses[node["status"]] = self.node_statuses.get(node["status"], 0) + 1
            if node.get("privacy"):
                self.privacy[Jurisdiction(node["jurisdiction"])] = node["privacy"]
        found: dict[Jurisdiction | None, tuple[float, float]] = {}
        for curve in cohort["survival"]["curves"]:
            start = curve["steps"][0]["atRisk"]
            if curve["dimensions"] or start["value"] is None:
                continue
            self.statuses.add(start["status"])
            country = curve["jurisdiction"]
            key = None if country is None else Jurisdiction(country)
            found[key] = (float(start["value"]), float(start["sd"] or 0.0) ** 2)
        return found

    def _answered(self, application: str, query: str) -> dict[str, Any]:
        """The data of a question asked under `application`, counted as asked; the gateway's
        refusal raised (the allowance's as `BudgetExhausted`), and not counted: nothing was
        asked of the nodes."""
        body = self._post(query, self.credentials(application))
        errors = body.get("errors")
        if errors:
            code = str((errors[0].get("extensions") or {}).get("code", "ERROR"))
            if code == "RATE_LIMITED":
                raise BudgetExhausted(errors[0].get("message", code))
            raise QuestionRefused(code, str(errors[0].get("message", "")))
        self.asked[application] = self.asked.get(application, 0) + 1
        data: dict[str, Any] = body["data"]
        return data

    def _node_part(
        self,
        cohort: dict[str, Any],
        jurisdiction: Jurisdiction,
        field: str,
        count: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> dict[str, Any] | None:
        """One node's `field` in a cohort answer (None when it did not answer), noting its
        status, privacy spend and the status of the count that `count` reads from it."""
        for node in cohort["byJurisdiction"]:
            if Jurisdiction(node["jurisdiction"]) is not jurisdiction:
                continue
            self.node_statuses[node["status"]] = self.node_statuses.get(node["status"], 0) + 1
            if node.get("privacy"):
                self.privacy[jurisdiction] = node["privacy"]
            found: dict[str, Any] | None = node.get(field)
            if found is not None:
                self.statuses.add(count(found)["status"])
            return found
        return None

    def _note(self, answer: Answer) -> None:
        self.statuses.add(answer.pooled.status)
        for node in answer.nodes.values():
            self.node_statuses[node.status] = self.node_statuses.get(node.status, 0) + 1
            if node.count is not None:
                self.statuses.add(node.count.status)
        for cells in answer.tables.values():
            self.statuses.update(c.status for c in cells.values())

    def _post(self, query: str, credentials: Credentials) -> dict[str, Any]:
        url = urllib.parse.urlsplit(self.federation.gateway_url)
        payload = json.dumps({"query": query}).encode()
        headers = [
            ("Content-Type", "application/json"),
            *credentials.headers(),  # one X-Tessera-Permit line per permit
            ("Content-Length", str(len(payload))),
        ]
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(
                    url.hostname or "127.0.0.1", url.port, timeout=120
                )
            try:
                self._connection.putrequest("POST", url.path)
                for name, value in headers:
                    self._connection.putheader(name, value)
                self._connection.endheaders(payload)
                response = self._connection.getresponse()
                data = response.read()
            except (ConnectionError, http.client.HTTPException):
                # A kept-alive connection the gateway closed: reconnect once.
                self.close()
                if attempt == 2:
                    raise
                continue
            parsed: dict[str, Any] = json.loads(data or b"{}")
            return parsed
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
