"""GraphQL output types and their construction from the combined result."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated

import strawberry

from gateway import combine
from gateway.federation import NodeInfo
from gateway.graphql.enums import (
    AgeAt,
    Dimension,
    Jurisdiction,
    LatencyClass,
    NodeStatus,
    ValueStatus,
    Vocabulary,
)
from gateway.planner import Plan
from policies.profiles import DisclosureProfile
from policies.transparency import PublishedPolicy, PublishedRule
from schema import result as model
from schema import wire
from schema.errors import ErrorCode, TesseraError
from schema.query import Breakdown

if TYPE_CHECKING:  # their types build on these: resolved lazily
    from gateway.graphql.columns import BreakdownColumns
    from gateway.graphql.survival import SurvivalResult


@strawberry.type(description="Why a number is what it is. Never carries the value it explains.")
class Reason:
    rule: str = strawberry.field(description="Stable rule id, e.g. PRIMARY_SUPPRESSION.")
    jurisdiction: Jurisdiction | None = strawberry.field(
        description="The jurisdiction whose rule it is; null when several contribute."
    )
    message: str
    article: str | None = strawberry.field(
        description="The legal provision (e.g. EHDS Art. 54) or policy source behind the rule."
    )

    @classmethod
    def of(cls, reason: model.Reason) -> Reason:
        return cls(
            rule=reason.rule,
            jurisdiction=reason.jurisdiction,
            message=reason.message,
            article=reason.article,
        )


@strawberry.type(description="A released count: null exactly when withheld (LOW or SUPPRESSED).")
class Count:
    value: int | None
    status: ValueStatus
    reasons: list[Reason]
    bound: float | None = strawberry.field(
        description="Largest distance from the truth that rounding may add."
    )
    sd: float | None = strawberry.field(
        description="Standard deviation of the noise added: the truth is the value give or "
        "take about this much (the noise is unbiased)."
    )
    contributors: list[Jurisdiction] | None = strawberry.field(
        description="For a count pooled securely across borders (reason SECURE_POOL): the "
        "jurisdictions whose counts are in it, withheld ones included. Null otherwise."
    )

    @classmethod
    def of(cls, value: model.Value) -> Count:
        return cls(
            value=value.value,
            status=value.status,
            reasons=[Reason.of(r) for r in value.reasons],
            bound=value.bound,
            sd=value.sd,
            contributors=value.contributors,
        )


@strawberry.type(
    description="A number derived from released values (a mean, a variance, an end of a "
    "confidence interval): null exactly when withheld, with the status and reasons of what "
    "it comes from."
)
class Estimate:
    value: float | None
    status: ValueStatus
    reasons: list[Reason]
    sd: float | None = strawberry.field(
        description="Standard deviation the noise gives this number (to first order): the "
        "truth, before sampling, is the value give or take about this much."
    )
    bound: float | None = strawberry.field(
        description="Largest distance from the truth its method adds beyond the noise (a "
        "quantile interpolated within a bin: the bin's width)."
    )

    @classmethod
    def of(cls, estimate: model.Estimate) -> Estimate:
        return cls(
            value=estimate.value,
            status=estimate.status,
            reasons=[Reason.of(r) for r in estimate.reasons],
            sd=estimate.sd,
            bound=estimate.bound,
        )


@strawberry.type(
    description="The question's numeric variable in one cell: n persons with a value (a "
    "noisy count, LOW below the minimum), the mean, variance and standard deviation of their "
    "values clipped to the question's bounds, and a 95% confidence interval for the mean "
    "(Student's t, sampling and noise together). Every number is withheld where n is; never "
    "a minimum or a maximum."
)
class Summary:
    n: Count
    mean: Estimate
    variance: Estimate
    sd: Estimate
    ci_low: Estimate
    ci_high: Estimate

    @classmethod
    def of(cls, summary: model.Summary | None) -> Summary | None:
        if summary is None:
            return None
        return cls(
            n=Count.of(summary.n),
            mean=Estimate.of(summary.mean),
            variance=Estimate.of(summary.variance),
            sd=Estimate.of(summary.sd),
            ci_low=Estimate.of(summary.ci_low),
            ci_high=Estimate.of(summary.ci_high),
        )


VARIABLE_SUMMARY = "The question's variable (argument `variable`) here; null without one."


@strawberry.type(
    description="The question's incidence rate in one cell (argument `outcome`): events (the "
    "persons whose first outcome fell in their follow-up, a noisy count, LOW below the "
    "minimum), person-years at risk (the nodes' noisy days at risk / 365.25, each person's "
    "clipped to the follow-up's length; withheld with the cell's count of persons or by a "
    "magnitude rule), the rate per `per` person-years and its exact Poisson 95% confidence "
    "interval (Garwood), each with the noise's sd. Every number is withheld where the events "
    "or the person-time are."
)
class Rate:
    events: Count
    person_years: Estimate
    rate: Estimate
    ci_low: Estimate
    ci_high: Estimate
    per: int = strawberry.field(description="The person-years the rate is given per.")

    @classmethod
    def of(cls, rate: model.Rate | None) -> Rate | None:
        if rate is None:
            return None
        return cls(
            events=Count.of(rate.events),
            person_years=Estimate.of(rate.person_years),
            rate=Estimate.of(rate.rate),
            ci_low=Estimate.of(rate.ci_low),
            ci_high=Estimate.of(rate.ci_high),
            per=rate.per,
        )


OUTCOME_RATE = "The question's incidence rate (argument `outcome`) here; null without one."


@strawberry.type(
    description="What an answer cost you at one node, in zCDP rho per person, worst case: "
    "figures that depend only on the questions you asked, never on the data. A person counted "
    "in more than `capRho` worth of your answers drops out of your counts at that node."
)
class PrivacySpend:
    sigma: float = strawberry.field(description="Standard deviation of the noise on the counts.")
    question_rho: float = strawberry.field(
        description="What this answer charged each person counted (0 when every table was "
        "asked before: repeats are free and return the same numbers)."
    )
    spent_rho: float = strawberry.field(description="Your worst-case spend at this node so far.")
    cap_rho: float
    organisation_spent_rho: float | None = strawberry.field(
        description="Your organisation's worst-case spend at this node, all its researchers."
    )
    organisation_cap_rho: float | None
    data_release: str = strawberry.field(
        description="The node's data release the answer comes from: answers are stored per "
        "release, and a new release computes re-asked questions afresh (and charges them)."
    )

    @classmethod
    def of(cls, spend: wire.PrivacySpend) -> PrivacySpend:
        return cls(
            sigma=spend.sigma,
            question_rho=spend.question_rho,
            spent_rho=spend.spent_rho,
            cap_rho=spend.cap_rho,
            organisation_spent_rho=spend.organisation_spent_rho,
            organisation_cap_rho=spend.organisation_cap_rho,
            data_release=spend.data_release,
        )


@strawberry.type(description="A code of the question that a node's vocabulary does not hold.")
class UnknownCode:
    vocabulary: Vocabulary
    code: str
    to: str | None = strawberry.field(default=None, description="The end of its range, if any.")


@strawberry.type(description="One node's part of the answer.")
class NodeResult:
    jurisdiction: Jurisdiction
    status: NodeStatus
    latency_ms: float | None
    count: Count | None = strawberry.field(
        description="The country's own count. Null unless the node answered OK, and null "
        "with reason NOT_ASKED when the question pooled its total securely without selecting "
        "this field: the country then released no count of its own (selecting it asks for "
        "it, and it is charged)."
    )
    reasons: list[Reason]
    error: str | None = strawberry.field(description="What went wrong, when the node failed.")
    privacy: PrivacySpend | None = strawberry.field(
        description="What the answer cost you at this node (null unless it answered OK)."
    )
    unknown_codes: list[UnknownCode] = strawberry.field(
        description="With status UNKNOWN_CODE: the question's codes that no concept of this "
        "node's vocabulary matches (the node computed and charged nothing). Whether a "
        "vocabulary holds a code is public; a code it holds that nobody has is a count (LOW), "
        "never UNKNOWN_CODE."
    )
    vocabularies: list[str] = strawberry.field(
        description="The OMOP vocabularies (vocabulary_id) the question's codes were found in "
        "at this node: for ICD10, the national modifications it holds ICD-10 under (CIM10 in "
        "France, ICD10GM in Germany, ICD10CM) besides WHO ICD10."
    )
    summary: Summary | None = strawberry.field(description=VARIABLE_SUMMARY)
    rate: Rate | None = strawberry.field(description=OUTCOME_RATE)

    @classmethod
    def of(cls, node: combine.NodeResult) -> NodeResult:
        return cls(
            jurisdiction=node.jurisdiction,
            status=node.status,
            latency_ms=node.latency_ms,
            count=Count.of(node.count) if node.count is not None else None,
            reasons=[Reason.of(r) for r in node.reasons],
            error=node.error,
            privacy=None if node.privacy is None else PrivacySpend.of(node.privacy),
            unknown_codes=[
                UnknownCode(vocabulary=c.vocabulary, code=c.code, to=c.to)
                for c in node.unknown_codes
            ],
            vocabularies=list(node.vocabularies),
            summary=Summary.of(node.summary),
            rate=Rate.of(node.rate),
        )


@strawberry.type
class DimensionValue:
    name: Dimension
    value: str


@strawberry.type
class Cell:
    dimensions: list[DimensionValue]
    count: Count
    summary: Summary | None = strawberry.field(description=VARIABLE_SUMMARY)
    rate: Rate | None = strawberry.field(description=OUTCOME_RATE)

    @classmethod
    def of(cls, cell: model.Cell) -> Cell:
        return cls(
            dimensions=[DimensionValue(name=d.name, value=d.value) for d in cell.dimensions],
            count=Count.of(cell.count),
            summary=Summary.of(cell.summary),
            rate=Rate.of(cell.rate),
        )


@strawberry.type(
    description="The quartiles of the question's variable in one group of a histogram (the "
    "cells of a table by VALUE_BIN sharing its other dimensions' values), estimated from the "
    "released bins only, each within its bin. Never a minimum or a maximum."
)
class Quantiles:
    dimensions: list[DimensionValue] = strawberry.field(
        description="The group: the cells' values of the table's other dimensions."
    )
    q1: Estimate
    median: Estimate
    q3: Estimate
    iqr: Estimate = strawberry.field(
        description="The interquartile range, q3 − q1 (bound: twice the bin width)."
    )

    @classmethod
    def of(cls, found: model.Quantiles) -> Quantiles:
        return cls(
            dimensions=[DimensionValue(name=d.name, value=d.value) for d in found.dimensions],
            q1=Estimate.of(found.q1),
            median=Estimate.of(found.median),
            q3=Estimate.of(found.q3),
            iqr=Estimate.of(found.iqr),
        )


def _cells(root: strawberry.Parent[BreakdownTable]) -> list[Cell]:
    return [Cell.of(c) for c in root.combined]


def _columns(
    root: strawberry.Parent[BreakdownTable],
) -> Annotated[BreakdownColumns, strawberry.lazy("gateway.graphql.columns")]:
    from gateway.graphql.columns import BreakdownColumns  # its types build on this module's

    return BreakdownColumns(by=root.by, cells=root.combined)


def _quantiles(root: strawberry.Parent[BreakdownTable]) -> list[Quantiles]:
    return [Quantiles.of(q) for q in root.found_quantiles]


@strawberry.type(name="Breakdown", description="A table of counts by the given dimensions.")
class BreakdownTable:
    by: list[Dimension]
    cells: list[Cell] = strawberry.field(
        resolver=_cells,
        description="One object per cell: convenient; `columns` is the same table, faster.",
    )
    columns: Annotated[BreakdownColumns, strawberry.lazy("gateway.graphql.columns")] = (
        strawberry.field(
            resolver=_columns,
            description="The table as columns, one list per dimension and per number: the same "
            "values, statuses and reasons as `cells`, in the same order, without an object per "
            "cell.",
        )
    )
    quantiles: list[Quantiles] = strawberry.field(
        resolver=_quantiles,
        description="For a histogram (a table by VALUE_BIN): the quartiles of each group of "
        "its cells; empty otherwise.",
    )
    # The combined table: its cells and columns are made from it only when selected.
    combined: strawberry.Private[Sequence[model.Cell]]
    found_quantiles: strawberry.Private[Sequence[model.Quantiles]]


def _breakdown(root: strawberry.Parent[CohortResult], by: list[Dimension]) -> BreakdownTable:
    table = root.tables.get(tuple(by))
    if table is None:
        # The planner reads every breakdown of the selection; reaching this is a bug.
        raise TesseraError("this breakdown was not planned", code=ErrorCode.INTERNAL)
    return table


@strawberry.type(description="The answer to one cohort question.")
class CohortResult:
    query_id: strawberry.ID
    trace_id: str | None = strawberry.field(description="OpenTelemetry trace id (32 hex).")
    reference_date: dt.date = strawberry.field(
        description="The question's reference date: the population is the persons born by its "
        "year; ages are taken at it when ageAt is REFERENCE_DATE."
    )
    age_at: AgeAt = strawberry.field(description="When ages were taken, as asked or defaulted.")
    count: Count = strawberry.field(description="The pooled count over the nodes that answered.")
    summary: Summary | None = strawberry.field(
        description="The question's variable (argument `variable`) pooled over the nodes "
        "that answered: their statistics added up, as if in one place; null without one."
    )
    rate: Rate | None = strawberry.field(
        description="The question's incidence rate (argument `outcome`) pooled over the nodes "
        "that answered: their events and days at risk added up, as if in one place; null "
        "without one."
    )
    by_jurisdiction: list[NodeResult]
    breakdown: BreakdownTable = strawberry.field(
        resolver=_breakdown,
        description="The cohort broken down by up to four dimensions. Every breakdown of a "
        "query is computed by the same single request per node.",
    )
    tables: strawberry.Private[Mapping[Breakdown, BreakdownTable]]
    survival: Annotated[SurvivalResult, strawberry.lazy("gateway.graphql.survival")] | None = (
        strawberry.field(
            default=None,
            description="The question's survival curves and log-rank tests (argument survival); "
            "null without it.",
        )
    )

    @classmethod
    def of(cls, plan: Plan, combined: combine.Combined, *, trace_id: str | None) -> CohortResult:
        return cls(
            query_id=strawberry.ID(plan.query_id),
            trace_id=trace_id,
            reference_date=plan.reference_date,
            age_at=plan.node_query.age_basis,
            count=Count.of(combined.count),
            summary=Summary.of(combined.summary),
            rate=Rate.of(combined.rate),
            by_jurisdiction=[NodeResult.of(n) for n in combined.by_jurisdiction],
            tables={
                by: BreakdownTable(
                    by=list(by), combined=cells, found_quantiles=combined.quantiles.get(by, ())
                )
                for by, cells in combined.tables.items()
            },
        )


@strawberry.type(description="A member of the federation and its disclosure rule.")
class JurisdictionInfo:
    code: Jurisdiction
    node_id: str
    min_count: int = strawberry.field(description="Smallest count this jurisdiction releases.")
    source: str = strawberry.field(description="The public rule the minimum comes from.")
    verified: bool = strawberry.field(description="Whether an HDAB has confirmed the minimum.")
    latency: LatencyClass = strawberry.field(
        description="Its node's latency class: how long the gateway waits for it."
    )

    @classmethod
    def of(cls, node: NodeInfo, profile: DisclosureProfile) -> JurisdictionInfo:
        return cls(
            code=node.jurisdiction,
            node_id=node.node_id,
            min_count=profile.min_count,
            source=profile.source,
            verified=profile.verified,
            latency=node.latency,
        )


@strawberry.type(description="One rule of a jurisdiction's effective policy, with its source.")
class PolicyRule:
    rule: str = strawberry.field(description="Dotted rule path, e.g. disclosure.min_count.")
    value: str = strawberry.field(description="The effective value, rendered for people.")
    source: str = strawberry.field(description="The public rule or decision it comes from.")
    verified: bool = strawberry.field(description="Whether the HDAB has confirmed it.")
    layers: list[str] = strawberry.field(description="The policy layers the value comes from.")
    order: str = strawberry.field(description="What 'stricter' means for this rule.")

    @classmethod
    def of(cls, rule: PublishedRule) -> PolicyRule:
        return cls(
            rule=rule.rule,
            value=rule.value,
            source=rule.source,
            verified=rule.verified,
            layers=list(rule.layers),
            order=rule.order,
        )


@strawberry.type(description="A jurisdiction's effective policy: EU baseline, then national.")
class JurisdictionPolicy:
    jurisdiction: Jurisdiction
    name: str
    health_data_access_body: str
    layers: list[str] = strawberry.field(description="Layers composed, strictest wins.")
    rules: list[PolicyRule]
    optout_mechanism: str | None

    @classmethod
    def of(cls, policy: PublishedPolicy) -> JurisdictionPolicy:
        return cls(
            jurisdiction=policy.jurisdiction,
            name=policy.name,
            health_data_access_body=policy.hdab.name,
            layers=list(policy.layers),
            rules=[PolicyRule.of(rule) for rule in policy.rules],
            optout_mechanism=policy.optout_mechanism,
        )
