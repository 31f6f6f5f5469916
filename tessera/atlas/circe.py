"""An ATLAS cohort definition (OHDSI Circe's `CohortExpression` JSON), read into typed
structures. Only the elements Tessera translates or deliberately leaves aside are fields; every
other key is kept as the model's extra data, so that the translation can refuse it by its path
(`extras`) rather than drop it unseen. Keys are spelled as ATLAS exports them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


class CirceModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


def neutral(value: Any) -> bool:
    """Whether a value says nothing: ATLAS writes its defaults (`false`, `[]`, `{}`, `null`,
    `""`) for what a definition does not use, and those change nothing."""
    return value is None or value is False or value == "" or value == [] or value == {}


def extras(model: BaseModel) -> dict[str, Any]:
    """The keys of `model` that are not its fields and say something."""
    return {k: v for k, v in (model.model_extra or {}).items() if not neutral(v)}


# --- concept sets ---------------------------------------------------------------------------


class CirceConcept(CirceModel):
    concept_id: Annotated[int, Field(alias="CONCEPT_ID")]
    concept_code: Annotated[str | None, Field(alias="CONCEPT_CODE")] = None
    vocabulary_id: Annotated[str | None, Field(alias="VOCABULARY_ID")] = None
    concept_name: Annotated[str | None, Field(alias="CONCEPT_NAME")] = None
    standard_concept: Annotated[str | None, Field(alias="STANDARD_CONCEPT")] = None


class ConceptSetItem(CirceModel):
    concept: CirceConcept
    is_excluded: Annotated[bool, Field(alias="isExcluded")] = False
    include_descendants: Annotated[bool, Field(alias="includeDescendants")] = False
    include_mapped: Annotated[bool, Field(alias="includeMapped")] = False


class ConceptSetExpression(CirceModel):
    items: list[ConceptSetItem] = []


class CirceConceptSet(CirceModel):
    id: int
    name: str = ""
    expression: ConceptSetExpression = ConceptSetExpression()


# --- ranges and windows ---------------------------------------------------------------------


class NumericRange(CirceModel):
    value: Annotated[float, Field(alias="Value", allow_inf_nan=False)]
    op: Annotated[str, Field(alias="Op")]
    extent: Annotated[float | None, Field(alias="Extent", allow_inf_nan=False)] = None


class DateRange(CirceModel):
    value: Annotated[str, Field(alias="Value")]
    op: Annotated[str, Field(alias="Op")]
    extent: Annotated[str | None, Field(alias="Extent")] = None


class WindowBound(CirceModel):
    # No days: as far as the index's observation period reaches on that side.
    days: Annotated[int | None, Field(alias="Days")] = None
    coeff: Annotated[int, Field(alias="Coeff")] = 1


class Window(CirceModel):
    start: Annotated[WindowBound, Field(alias="Start")]
    end: Annotated[WindowBound, Field(alias="End")]
    use_index_end: Annotated[bool | None, Field(alias="UseIndexEnd")] = None
    use_event_end: Annotated[bool | None, Field(alias="UseEventEnd")] = None


class OccurrenceCount(CirceModel):
    # 0 exactly, 1 at most, 2 at least
    type: Annotated[int, Field(alias="Type")]
    count: Annotated[int, Field(alias="Count")]
    is_distinct: Annotated[bool, Field(alias="IsDistinct")] = False


class ObservationWindow(CirceModel):
    prior_days: Annotated[int, Field(alias="PriorDays")] = 0
    post_days: Annotated[int, Field(alias="PostDays")] = 0


class Limit(CirceModel):
    type: Annotated[str, Field(alias="Type")] = "First"


# --- criteria -------------------------------------------------------------------------------


class DomainCriterion(CirceModel):
    """One domain's criterion (`ConditionOccurrence`, `DrugExposure`, ...): the filters
    Tessera translates; any other filter stays in the extras."""

    codeset_id: Annotated[int | None, Field(alias="CodesetId")] = None
    first: Annotated[bool | None, Field(alias="First")] = None
    occurrence_start_date: Annotated[DateRange | None, Field(alias="OccurrenceStartDate")] = None
    age: Annotated[NumericRange | None, Field(alias="Age")] = None
    gender: Annotated[list[CirceConcept] | None, Field(alias="Gender")] = None
    visit_type: Annotated[list[CirceConcept] | None, Field(alias="VisitType")] = None
    value_as_number: Annotated[NumericRange | None, Field(alias="ValueAsNumber")] = None
    correlated_criteria: Annotated[CriteriaGroup | None, Field(alias="CorrelatedCriteria")] = None


class Criterion(CirceModel):
    """`{"<Domain>": {...}}`: the domains Tessera has; any other is an extra."""

    condition_occurrence: Annotated[DomainCriterion | None, Field(alias="ConditionOccurrence")] = (
        None
    )
    drug_exposure: Annotated[DomainCriterion | None, Field(alias="DrugExposure")] = None
    measurement: Annotated[DomainCriterion | None, Field(alias="Measurement")] = None
    visit_occurrence: Annotated[DomainCriterion | None, Field(alias="VisitOccurrence")] = None
    death: Annotated[DomainCriterion | None, Field(alias="Death")] = None


class CorrelatedCriteria(CirceModel):
    criteria: Annotated[Criterion, Field(alias="Criteria")]
    start_window: Annotated[Window, Field(alias="StartWindow")]
    end_window: Annotated[Window | None, Field(alias="EndWindow")] = None
    restrict_visit: Annotated[bool, Field(alias="RestrictVisit")] = False
    ignore_observation_period: Annotated[bool, Field(alias="IgnoreObservationPeriod")] = False
    occurrence: Annotated[OccurrenceCount, Field(alias="Occurrence")]


class DemographicCriteria(CirceModel):
    age: Annotated[NumericRange | None, Field(alias="Age")] = None
    gender: Annotated[list[CirceConcept] | None, Field(alias="Gender")] = None


class CriteriaGroup(CirceModel):
    type: Annotated[str, Field(alias="Type")] = "ALL"
    count: Annotated[int | None, Field(alias="Count")] = None
    criteria_list: Annotated[list[CorrelatedCriteria], Field(alias="CriteriaList")] = []
    demographic_criteria_list: Annotated[
        list[DemographicCriteria], Field(alias="DemographicCriteriaList")
    ] = []
    groups: Annotated[list[CriteriaGroup], Field(alias="Groups")] = []

    def is_empty(self) -> bool:
        """Whether the group holds no criterion (ATLAS: it holds for everyone)."""
        return not (self.criteria_list or self.demographic_criteria_list or self.groups)


class InclusionRule(CirceModel):
    name: str = ""
    description: str | None = None
    expression: CriteriaGroup


class PrimaryCriteria(CirceModel):
    criteria_list: Annotated[list[Criterion], Field(alias="CriteriaList")]
    observation_window: Annotated[ObservationWindow, Field(alias="ObservationWindow")] = (
        ObservationWindow()
    )
    primary_criteria_limit: Annotated[Limit, Field(alias="PrimaryCriteriaLimit")] = Limit()


class CensorWindow(CirceModel):
    start_date: Annotated[str | None, Field(alias="StartDate")] = None
    end_date: Annotated[str | None, Field(alias="EndDate")] = None


class CohortExpression(CirceModel):
    """A whole definition, as ATLAS exports it (its "Export" tab, JSON)."""

    concept_sets: Annotated[list[CirceConceptSet], Field(alias="ConceptSets")] = []
    primary_criteria: Annotated[PrimaryCriteria, Field(alias="PrimaryCriteria")]
    additional_criteria: Annotated[CriteriaGroup | None, Field(alias="AdditionalCriteria")] = None
    qualified_limit: Annotated[Limit | None, Field(alias="QualifiedLimit")] = None
    expression_limit: Annotated[Limit | None, Field(alias="ExpressionLimit")] = None
    inclusion_rules: Annotated[list[InclusionRule], Field(alias="InclusionRules")] = []
    # Cohort periods only: read so that they are not mistaken for unknown elements.
    end_strategy: Annotated[dict[str, Any] | None, Field(alias="EndStrategy")] = None
    censoring_criteria: Annotated[list[Criterion], Field(alias="CensoringCriteria")] = []
    collapse_settings: Annotated[dict[str, Any] | None, Field(alias="CollapseSettings")] = None
    censor_window: Annotated[CensorWindow | None, Field(alias="CensorWindow")] = None
    cdm_version_range: Annotated[str | None, Field(alias="cdmVersionRange")] = None
    title: Annotated[str | None, Field(alias="Title")] = None


DomainCriterion.model_rebuild()
