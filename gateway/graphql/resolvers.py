"""The root query. `cohort` only translates: its arguments and the fields it selects become
one question (`gateway.service.CohortQuestion`), which the gateway's pipeline answers
(`gateway.service.answer_cohort`: authenticate, permits, plan, policy, limits, fan-out,
combine, audit); the answer becomes its GraphQL types, and the breakdown tables are then only
looked up (`CohortResult.breakdown`). Errors become GraphQL errors (`gateway.graphql.errors`).

`cohort` is nullable: a field that is refused or fails is null with its error (at its path),
and costs no other field of the request its answer. Each field has its own audit entry, so
the trail holds exactly what the researcher received: an answer for each field answered, a
refusal for each field refused."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, TypeVar

import strawberry

from gateway.graphql.compliance import (
    AuditChain,
    AuditEntry,
    AuditPage,
    audit_chains,
    audit_entries,
    audit_entry,
)
from gateway.graphql.context import GatewayContext
from gateway.graphql.enums import AgeAt, Jurisdiction, NoiseLevel
from gateway.graphql.inputs import (
    CriteriaInput,
    IndexEventInput,
    VariableInput,
    criteria_data,
    index_data,
    variable_data,
)
from gateway.graphql.issuers import TrustedIssuerInfo, trusted_issuers
from gateway.graphql.permissions import allow
from gateway.graphql.rate_inputs import OutcomeInput, outcome_data, rate_per
from gateway.graphql.regression import RegressionResult, resolve_regression
from gateway.graphql.selection import (
    requested_breakdowns,
    requested_count,
    requested_node_count,
    requested_summary,
)
from gateway.graphql.survival import (
    SurvivalInput,
    SurvivalResult,
    survival_data,
    survival_tables,
)
from gateway.graphql.types import CohortResult, JurisdictionInfo, JurisdictionPolicy
from gateway.graphql.vocabulary import ConceptInfo, resolve_concepts
from gateway.service import CohortQuestion, answer_cohort
from policies.transparency import publish
from schema.approval import Role

Info = strawberry.Info[GatewayContext, None]
T = TypeVar("T")


async def _cohort(
    info: Info,
    *,
    request: str,
    jurisdictions: list[Jurisdiction] | None = strawberry.UNSET,
    criteria: CriteriaInput,
    index: Annotated[
        IndexEventInput | None,
        strawberry.argument(
            description="The index event: what dates each person's entry into the cohort, "
            "with the criteria (relative ones among them) taken at each candidate index date. "
            "Without it, the index event is the criteria's first top-level condition (else "
            "drug, else measurement)."
        ),
    ] = strawberry.UNSET,
    reference_date: Annotated[
        dt.date | None,
        strawberry.argument(
            description="The question's reference date (default: 1 January of the current "
            "year). The population is the persons born by its year, and ages are taken at it "
            "when ageAt is REFERENCE_DATE. For historic data (a trial of the 1990s) set it, or "
            "take ages at the index event."
        ),
    ] = strawberry.UNSET,
    age_at: Annotated[
        AgeAt | None,
        strawberry.argument(
            description="When ages are taken, for age criteria and age bands alike. Default: "
            "INDEX_EVENT when there is an index, or the criteria name a condition, drug or "
            "measurement at the top level, else REFERENCE_DATE."
        ),
    ] = strawberry.UNSET,
    deadline_ms: int | None = strawberry.UNSET,
    min_nodes: int | None = strawberry.UNSET,
    min_share: float | None = strawberry.UNSET,
    noise: NoiseLevel | None = strawberry.UNSET,
    variable: Annotated[
        VariableInput | None,
        strawberry.argument(
            description="A numeric variable to summarise in every cell (`summary` on the "
            "result, each country and each cell). Each cell of each table then also costs "
            "its n and two sums, each what a count costs."
        ),
    ] = strawberry.UNSET,
    outcome: Annotated[
        OutcomeInput | None,
        strawberry.argument(
            description="An incidence rate's outcome and follow-up from the index (`rate` on "
            "the result, each country and each cell)."
        ),
    ] = strawberry.UNSET,
    survival: Annotated[
        SurvivalInput | None,
        strawberry.argument(
            description="Follow the cohort from its index event to an outcome: the `survival` "
            "field's curves and log-rank tests. Costs one table by FOLLOW_UP (and one by it "
            "and groupBy), each person counted once in each."
        ),
    ] = strawberry.UNSET,
) -> CohortResult | None:
    # UNSET (argument omitted) and null both mean "not given".
    followed = _given(survival)
    tables = requested_breakdowns(info.selected_fields)
    if followed is not None:
        tables += [t for t in survival_tables(followed) if t not in tables]
    question = CohortQuestion(
        request=request,
        criteria=criteria_data(criteria),
        index=None if not index else index_data(index),
        tables=tuple(tables),
        pool_total=requested_count(info.selected_fields),
        per_country=requested_node_count(info.selected_fields),
        jurisdictions=None if (asked := _given(jurisdictions)) is None else tuple(asked),
        reference_date=_given(reference_date),
        age_at=_given(age_at),
        deadline_ms=_given(deadline_ms),
        min_nodes=_given(min_nodes),
        min_share=_given(min_share),
        noise=NoiseLevel.STANDARD if (level := _given(noise)) is None else level,
        variable=None
        if (asked_variable := _given(variable)) is None
        else variable_data(asked_variable),
        summary=requested_summary(info.selected_fields),
        **_rates(_given(outcome)),
        survival=None if followed is None else survival_data(followed),
        curves_by_country=followed is None or followed.by_country,
    )
    answer = await answer_cohort(info.context.services, info.context, question)
    result = CohortResult.of(answer.plan, answer.combined, trace_id=answer.trace_id)
    if followed is not None:
        result.survival = SurvivalResult.of(answer.combined)
    return result


def _rates(outcome: OutcomeInput | None) -> dict[str, Any]:
    if outcome is None:
        return {}
    return {"outcome": outcome_data(outcome), "rate_per": rate_per(outcome)}


def _given(value: T) -> T | None:
    return None if value is strawberry.UNSET else value


def _jurisdictions(info: Info) -> list[JurisdictionInfo]:
    services = info.context.services
    policies = services.policies.current
    return [
        JurisdictionInfo.of(node, policies.profile(j))
        for j, node in services.federation.nodes.items()
    ]


def _policies(
    info: Info, jurisdictions: list[Jurisdiction] | None = None
) -> list[JurisdictionPolicy]:
    """Published rules of the federation's members (or those asked), with their sources."""
    services = info.context.services
    members = services.federation.members
    wanted = [j for j in (jurisdictions or members) if j in members]
    policies = services.policies.current
    return [
        JurisdictionPolicy.of(publish(policies.effective(j)))
        for j in wanted
        if j in policies.jurisdictions
    ]


@strawberry.type
class Query:
    cohort: CohortResult | None = strawberry.field(
        resolver=_cohort,
        permission_classes=[allow(Role.RESEARCHER)],
        description="Ask one question of the federation under approved data requests: one "
        "permit per jurisdiction, each from that jurisdiction's HDAB, sent in X-Tessera-Permit "
        "headers. `request` must be the data request id or the application id of the "
        "permits; a jurisdiction without a permit is DENIED (PERMIT_MISSING). `jurisdictions` "
        "defaults to every member; `referenceDate` defaults to 1 January of the current year "
        "and `ageAt` to the index event when the criteria name one (see both). `deadlineMs` "
        "bounds the wait for the nodes (default and upper bound set by the gateway); nodes "
        "that have not answered by then "
        "are TIMEOUT. `minNodes` / `minShare` require that many (or that share) of the asked "
        "nodes to answer OK, or the query fails with QUORUM_NOT_MET. `noise: COARSE` asks for "
        "twice the noise at a quarter of the privacy cost (for exploring). Null when refused or "
        "failed, with the reason in `errors` (its `path` names the field): one field's "
        "refusal never takes another field's answer with it.",
    )
    regression: RegressionResult | None = strawberry.field(
        resolver=resolve_regression,
        permission_classes=[allow(Role.RESEARCHER)],
        description="Fit a generalised linear model (linear, logistic, Poisson) of an "
        "outcome on covariates over a cohort with an index event, across the federation, "
        "under the same permits as `cohort`. Each Newton iteration asks every node for its "
        "cohort's noisy information matrix and score at the current coefficients, charged "
        "to the persons counted; no node releases anything about a person. Nodes refuse as "
        "DataSHIELD does (REGRESSION_TOO_FEW_PERSONS, REGRESSION_TOO_MANY_PARAMETERS, "
        "REGRESSION_SPARSE_LEVEL, REGRESSION_SATURATED): with every node refusing, the answer "
        "has no coefficients and each node's reason. Null when the question itself is refused, "
        "with the reason in `errors`.",
    )
    concepts: list[ConceptInfo] = strawberry.field(
        resolver=resolve_concepts,
        permission_classes=[allow(Role.RESEARCHER)],
        description="What the nodes' vocabularies hold of up to 32 codes: each code's name, "
        "the concepts it names and reaches (what a question on it counts), and which nodes "
        "know it. Facts about the vocabularies, not data: each node answers from its concept "
        "tables only, so no permit is needed and no privacy budget is spent.",
    )
    jurisdictions: list[JurisdictionInfo] = strawberry.field(
        resolver=_jurisdictions,
        description="The federation's members and their disclosure rules (no token needed).",
    )
    policies: list[JurisdictionPolicy] = strawberry.field(
        resolver=_policies,
        description="Each member's effective legal and disclosure rules, every rule with its "
        "public source and whether the HDAB confirmed it (no token needed).",
    )
    audit_entries: AuditPage = strawberry.field(
        resolver=audit_entries,
        description="The gateway's audit trail, newest first: one worker process's chain "
        "(compliance role only).",
    )
    audit_entry: AuditEntry | None = strawberry.field(
        resolver=audit_entry,
        description="One query's full audit record, whichever worker process wrote it "
        "(compliance role only).",
    )
    audit_chains: list[AuditChain] = strawberry.field(
        resolver=audit_chains,
        description="The chains of the gateway's audit trail, one per worker process "
        "(compliance role only).",
    )
    issuers: list[TrustedIssuerInfo] = strawberry.field(
        resolver=trusted_issuers,
        permission_classes=[allow(Role.COMPLIANCE, Role.OPERATOR)],
        description="The HDABs whose tokens this gateway accepts (compliance and operator roles).",
    )
