"""The common question as a GraphQL document: a cohort by criteria, its pooled count, every
node's part and its breakdowns. Criteria travel as variables (`CriteriaInput`), breakdowns
as literals of the published `Dimension` allow-list, so the document is the same for every
cohort and nothing the caller typed is spliced into it.

    >>> concept("ICD10:E11")
    {'vocabulary': 'ICD10', 'code': 'E11', 'descendants': True}
    >>> concept("ICD10:F70-F79")
    {'vocabulary': 'ICD10', 'code': 'F70', 'descendants': True, 'to': 'F79'}
    >>> criteria(concepts=["ICD10:E11"], sex="female", age=(40, 69))["age"]
    {'min': 40, 'max': 69}

An index event and criteria relative to it (`index`, `event`, `relative`):

    >>> admission = event("CONDITION", ["ICD10:U07.1"], visit="INPATIENT")
    >>> index([admission], occurrence="FIRST")["events"][0]["visit"]
    'INPATIENT'
    >>> died = relative(event("DEATH"), days=(0, 28))
    >>> died["event"], died["window"]
    ({'domain': 'DEATH'}, {'startDays': 0, 'endDays': 28})
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from schema.code_ranges import RANGE_VOCABULARIES
from schema.codes import (
    AgeAt,
    Dimension,
    EventDomain,
    Jurisdiction,
    NoiseLevel,
    Occurrence,
    Sex,
    VisitType,
    Vocabulary,
)
from schema.errors import ErrorCode
from tessera.client.columns import (
    COUNT_COLUMN_FIELDS,
    RATE_COLUMN_FIELDS,
    SUMMARY_COLUMN_FIELDS,
)
from tessera.client.errors import InvalidQuery
from tessera.client.survival import SURVIVAL_FIELDS

# A concept's vocabulary decides which kind of event it is a criterion on.
_DRUG_VOCABULARIES: Final = frozenset({Vocabulary.ATC, Vocabulary.RXNORM})
_MEASUREMENT_VOCABULARIES: Final = frozenset({Vocabulary.LOINC})

COUNT_FIELDS: Final = "value status sd bound contributors reasons { rule jurisdiction message }"

Concept = str | Mapping[str, Any]
Breakdowns = Sequence[str | Dimension] | Sequence[Sequence[str | Dimension]]


def _vocabulary(name: str) -> Vocabulary:
    for vocabulary in Vocabulary:
        if name.upper() in (vocabulary.name, vocabulary.value.upper()):
            return vocabulary
    known = ", ".join(v.name for v in Vocabulary)
    raise InvalidQuery(f"unknown vocabulary (known: {known})", code=ErrorCode.INVALID_CODE)


def concept(spec: Concept, *, descendants: bool = True) -> dict[str, Any]:
    """`"ICD10:E11"`, or a range `"ICD10:F70-F79"` (ICD-10 and ATC), or an `EventInput`
    mapping, passed through (with `exclude`, `atLeast`, …), as an `EventInput`."""
    if isinstance(spec, Mapping):
        return dict(spec)
    name, sep, code = spec.partition(":")
    if not sep or not code.strip():
        raise InvalidQuery(
            "a concept is VOCABULARY:CODE, e.g. ICD10:E11 or ATC:A10", code=ErrorCode.INVALID_CODE
        )
    vocabulary = _vocabulary(name.strip())
    first, dash, last = code.partition("-")
    if not dash or vocabulary not in RANGE_VOCABULARIES:  # LOINC codes have a dash of their own
        first, last = code, ""
    event: dict[str, Any] = {
        "vocabulary": vocabulary.name,
        "code": first.strip().upper(),
        "descendants": descendants,
    }
    if last.strip():
        event["to"] = last.strip().upper()
    return event


def _kind(event: Mapping[str, Any]) -> str:
    vocabulary = _vocabulary(str(event.get("vocabulary", "")))
    if vocabulary in _DRUG_VOCABULARIES:
        return "drugs"
    if vocabulary in _MEASUREMENT_VOCABULARIES:
        return "measurements"
    return "conditions"


def criteria(
    *,
    concepts: Iterable[Concept] = (),
    conditions: Iterable[Concept] = (),
    drugs: Iterable[Concept] = (),
    measurements: Iterable[Concept] = (),
    sex: str | Sex | None = None,
    age: tuple[int | None, int | None] | None = None,
    any_of: Sequence[Mapping[str, Any]] = (),
    relative: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A `CriteriaInput`: every criterion given must hold. `concepts` go where their
    vocabulary says (ICD10/SNOMED: conditions, ATC/RxNorm: drugs, LOINC: measurements);
    `conditions`, `drugs`, `measurements` say it themselves; `relative` holds criteria
    relative to the question's index (`relative`)."""
    out: dict[str, list[dict[str, Any]]] = {"conditions": [], "drugs": [], "measurements": []}
    for spec in concepts:
        event = concept(spec)
        out[_kind(event)].append(event)
    for kind, specs in (
        ("conditions", conditions),
        ("drugs", drugs),
        ("measurements", measurements),
    ):
        out[kind].extend(concept(spec) for spec in specs)
    result: dict[str, Any] = {kind: events for kind, events in out.items() if events}
    if sex is not None:
        try:
            result["sex"] = Sex(str(sex).upper()).value
        except ValueError:
            raise InvalidQuery("sex is FEMALE or MALE", code=ErrorCode.INVALID_CRITERIA) from None
    if age is not None:
        low, high = age
        result["age"] = {"min": low, "max": high}
    if any_of:
        result["anyOf"] = [dict(group) for group in any_of]
    if relative:
        result["relative"] = [dict(r) for r in relative]
    return result


def _member(kind: type[Any], value: object, what: str) -> str:
    try:
        member: str = kind(str(value).strip().upper()).value
    except ValueError:
        known = ", ".join(m.value for m in kind)
        raise InvalidQuery(
            f"unknown {what} (known: {known})", code=ErrorCode.INVALID_CRITERIA
        ) from None
    return member


def _window(window: tuple[dt.date | None, dt.date | None]) -> dict[str, str]:
    start, end = window
    return {
        name: value.isoformat()
        for name, value in (("start", start), ("end", end))
        if value is not None
    }


def event(
    domain: str | EventDomain,
    codes: Iterable[Concept] = (),
    *,
    excluded: Iterable[Concept] = (),
    visit: str | VisitType | None = None,
    value: tuple[float | None, float | None] | None = None,
    window: tuple[dt.date | None, dt.date | None] | None = None,
) -> dict[str, Any]:
    """An `EventSpecInput`: events of `domain` (CONDITION, DRUG, MEASUREMENT, VISIT, DEATH)
    whose concept is one of `codes` (`"ICD10:I40"`, a range `"ICD10:F70-F79"`, or a
    `CodeInput` mapping) and none of `excluded`; recorded at a visit of type `visit`
    (INPATIENT, EMERGENCY, OUTPATIENT, INPATIENT_OR_EMERGENCY; for VISIT, the visit's own
    type); a measurement's `value=(min, max)`; a calendar `window=(start, end)`."""
    spec: dict[str, Any] = {"domain": _member(EventDomain, domain, "event domain")}
    for name, given in (("codes", codes), ("excluded", excluded)):
        listed = [_code(concept(c)) for c in given]
        if listed:
            spec[name] = listed
    if visit is not None:
        spec["visit"] = _member(VisitType, visit, "visit type")
    if value is not None:
        spec["value"] = {k: v for k, v in zip(("min", "max"), value, strict=True) if v is not None}
    if window is not None:
        spec["window"] = _window(window)
    return spec


def _code(event: Mapping[str, Any]) -> dict[str, Any]:
    # A concept set's code: its vocabulary, code, range end and descendants only.
    return {k: v for k, v in event.items() if k in ("vocabulary", "code", "to", "descendants")}


def index(
    events: Sequence[Mapping[str, Any]],
    *,
    occurrence: str | Occurrence = Occurrence.FIRST,
    window: tuple[dt.date | None, dt.date | None] | None = None,
    prior_observation_days: int | None = None,
    post_observation_days: int | None = None,
) -> dict[str, Any]:
    """An `IndexEventInput`: each person's index is one of `events` (`event(...)`, ORed):
    their FIRST qualifying one, or ALL of them as candidates; in a calendar `window`, with
    that many days observed before and after it."""
    data: dict[str, Any] = {
        "events": [dict(e) for e in events],
        "occurrence": _member(Occurrence, occurrence, "occurrence"),
    }
    if window is not None:
        data["window"] = _window(window)
    if prior_observation_days is not None:
        data["priorObservationDays"] = prior_observation_days
    if post_observation_days is not None:
        data["postObservationDays"] = post_observation_days
    return data


def relative(
    event: Mapping[str, Any],
    *,
    days: tuple[int, int],
    at_least: int = 1,
    at_most: int | None = None,
    exclude: bool = False,
) -> dict[str, Any]:
    """A `RelativeCriterionInput`: from `at_least` to `at_most` of `event` (`event(...)`) in
    the window of `days=(start, end)` around the index date (negative: before it; `(0, 28)`:
    the index date and the 28 days after); none of them with `exclude`."""
    start, end = days
    data: dict[str, Any] = {
        "event": dict(event),
        "window": {"startDays": start, "endDays": end},
        "atLeast": at_least,
        "exclude": exclude,
    }
    if at_most is not None:
        data["atMost"] = at_most
    return data


def dimension(name: str | Dimension) -> Dimension:
    try:
        return Dimension(str(name).strip().upper())
    except ValueError:
        known = ", ".join(d.value for d in Dimension)
        raise InvalidQuery(
            f"unknown dimension (known: {known})", code=ErrorCode.UNKNOWN_DIMENSION
        ) from None


def breakdowns(by: Breakdowns | None) -> list[tuple[Dimension, ...]]:
    """`["SEX", "AGE_BAND_10"]` is one table; `[["SEX"], ["JURISDICTION", "AGE_BAND_10"]]`
    two."""
    if not by:
        return []
    if all(isinstance(item, str) for item in by):
        return [tuple(dimension(d) for d in by)]  # type: ignore[arg-type]
    return [tuple(dimension(d) for d in table) for table in by if not isinstance(table, str)]


ESTIMATE_FIELDS: Final = "value status sd bound reasons { rule jurisdiction message }"
SUMMARY_FIELDS: Final = (
    f"summary {{ n {{ {COUNT_FIELDS} }} mean {{ {ESTIMATE_FIELDS} }} "
    f"variance {{ {ESTIMATE_FIELDS} }} sd {{ {ESTIMATE_FIELDS} }} "
    f"ciLow {{ {ESTIMATE_FIELDS} }} ciHigh {{ {ESTIMATE_FIELDS} }} }}"
)
QUANTILE_FIELDS: Final = (
    f"quantiles {{ dimensions {{ name value }} q1 {{ {ESTIMATE_FIELDS} }} "
    f"median {{ {ESTIMATE_FIELDS} }} q3 {{ {ESTIMATE_FIELDS} }} iqr {{ {ESTIMATE_FIELDS} }} }}"
)


class Variable:
    """A numeric variable to summarise (`summary`) or bin (a breakdown by `VALUE_BIN`), as
    the gateway's `VariableInput`: `Variable.age(lo=18, hi=90)`,
    `Variable.measurement("4548-4", per_person="LAST", start=date(2020, 1, 1), lo=4, hi=14,
    bin_width=0.5)`, or around each person's index event (a question with `index`):
    `Variable.measurement("4548-4", per_person="LAST", days=(-365, 0))`. Bounds and bin
    widths are within the variable's registry entry (see the
    README, "Means, variances and histograms")."""

    @staticmethod
    def age(
        *, lo: float | None = None, hi: float | None = None, bin_width: float | None = None
    ) -> dict[str, Any]:
        return _variable("AGE", lo=lo, hi=hi, bin_width=bin_width)

    @staticmethod
    def measurement(
        code: str,
        *,
        per_person: str = "FIRST",
        start: dt.date | None = None,
        end: dt.date | None = None,
        days: tuple[int, int] | None = None,
        lo: float | None = None,
        hi: float | None = None,
        bin_width: float | None = None,
    ) -> dict[str, Any]:
        data = _variable("MEASUREMENT", lo=lo, hi=hi, bin_width=bin_width)
        data["code"] = code.removeprefix("LOINC:")
        data["perPerson"] = per_person.upper()
        window = {k: v.isoformat() for k, v in (("start", start), ("end", end)) if v}
        if window:
            data["window"] = window
        if days is not None:
            data["indexWindow"] = {"startDays": days[0], "endDays": days[1]}
        return data


def _variable(source: str, **bounds: float | None) -> dict[str, Any]:
    names = {"lo": "lo", "hi": "hi", "bin_width": "binWidth"}
    return {"source": source, **{names[k]: v for k, v in bounds.items() if v is not None}}


RATE_FIELDS: Final = (
    f"rate {{ per events {{ {COUNT_FIELDS} }} personYears {{ {ESTIMATE_FIELDS} }} "
    f"rate {{ {ESTIMATE_FIELDS} }} ciLow {{ {ESTIMATE_FIELDS} }} ciHigh {{ {ESTIMATE_FIELDS} }} }}"
)


def outcome(
    event: Mapping[str, Any], *, days: tuple[int, int], per: int = 100_000
) -> dict[str, Any]:
    """An `OutcomeInput`: an incidence rate of `event` (`event(...)`) over each person's
    follow-up from `days[0]` to `days[1]` after their index date (both included), given per
    `per` person-years (1,000, 10,000, 100,000 or 1,000,000). Needs `index`."""
    start, end = days
    return {"event": dict(event), "window": {"startDays": start, "endDays": end}, "per": per}


@dataclass(frozen=True, slots=True)
class Question:
    """A GraphQL document and its variables."""

    document: str
    variables: dict[str, Any]


def cohort_question(
    *,
    request: str,
    criteria: Mapping[str, Any],
    by: Sequence[tuple[Dimension, ...]] = (),
    jurisdictions: Sequence[str | Jurisdiction] | None = None,
    total: bool = True,
    countries: bool = True,
    reference_date: dt.date | None = None,
    age_at: str | AgeAt | None = None,
    deadline_ms: int | None = None,
    min_nodes: int | None = None,
    noise: str | NoiseLevel | None = None,
    index: Mapping[str, Any] | None = None,
    variable: Mapping[str, Any] | None = None,
    summary: bool = True,
    outcome: Mapping[str, Any] | None = None,
    survival: Mapping[str, Any] | None = None,
) -> Question:
    """The document of one cohort question: `queryId traceId`, the pooled `count` (when
    `total`: a securely pooled count costs privacy budget of its own), every node's status,
    latency, own count (when `countries`: next to a securely pooled count, each country's own
    is a release of its own, charged) and privacy spend, and one aliased breakdown per table
    (`b0`, `b1`, …). With `variable` (`Variable`), its `summary` pooled, per country and per
    cell (unless `summary=False`: then only its histograms, each table by VALUE_BIN with its
    `quantiles`). With `outcome` (`outcome(...)`), its incidence `rate` pooled, per country
    and per cell. With `survival` (`tessera.client.survival`), its curves and log-rank
    tests."""
    variables: dict[str, Any] = {"request": request, "criteria": dict(criteria)}
    arguments = ["request: $request", "criteria: $criteria"]
    declared = ["$request: String!", "$criteria: CriteriaInput!"]
    optional: list[tuple[str, str, Any]] = [
        ("jurisdictions", "[Jurisdiction!]", _jurisdictions(jurisdictions)),
        ("referenceDate", "Date", reference_date.isoformat() if reference_date else None),
        ("ageAt", "AgeAt", _age_at(age_at)),
        ("deadlineMs", "Int", deadline_ms),
        ("minNodes", "Int", min_nodes),
        ("noise", "NoiseLevel", _noise(noise)),
        ("index", "IndexEventInput", None if index is None else dict(index)),
        ("variable", "VariableInput", None if variable is None else dict(variable)),
        ("outcome", "OutcomeInput", None if outcome is None else dict(outcome)),
        ("survival", "SurvivalInput", None if survival is None else dict(survival)),
    ]
    for name, kind, value in optional:
        if value is not None:
            declared.append(f"${name}: {kind}")
            arguments.append(f"{name}: ${name}")
            variables[name] = value
    summarised = variable is not None and summary
    rate = f"    {RATE_FIELDS}\n" if outcome is not None else ""
    # Each table as columns: the gateway completes them without an object per cell
    # (`tessera.client.columns` reads them back as the cells they stand for).
    cell_summary = f" {SUMMARY_COLUMN_FIELDS}" if summarised else ""
    cell_summary += f" {RATE_COLUMN_FIELDS}" if outcome is not None else ""
    tables = "\n".join(
        f"    b{i}: breakdown(by: [{', '.join(d.value for d in table)}]) "
        f"{{ by columns {{ rows dimensions {{ name values }} count {{ {COUNT_COLUMN_FIELDS} }}"
        f"{cell_summary} }}"
        + (f" {QUANTILE_FIELDS}" if Dimension.VALUE_BIN in table else "")
        + " }"
        for i, table in enumerate(by)
    )
    document = (
        f"query Cohort({', '.join(declared)}) {{\n"
        f"  cohort({', '.join(arguments)}) {{\n"
        "    queryId traceId referenceDate ageAt\n"
        + (f"    count {{ {COUNT_FIELDS} }}\n" if total else "")
        + (f"    {SUMMARY_FIELDS}\n" if summarised else "")
        + rate
        + "    byJurisdiction { jurisdiction status latencyMs error\n"
        "      reasons { rule jurisdiction message }\n"
        + (f"      count {{ {COUNT_FIELDS} }}\n" if countries else "")
        + (f"      {SUMMARY_FIELDS}\n" if summarised else "")
        + ("  " + rate if rate else "")
        + "      privacy { sigma questionRho spentRho capRho dataRelease } }\n"
        + (tables + "\n" if tables else "")
        + (f"    {SURVIVAL_FIELDS}\n" if survival is not None else "")
        + "  }\n}\n"
    )
    return Question(document, variables)


def _jurisdictions(values: Sequence[str | Jurisdiction] | None) -> list[str] | None:
    if values is None:
        return None
    try:
        return [Jurisdiction(str(v).strip().upper()).value for v in values]
    except ValueError:
        raise InvalidQuery(
            "unknown jurisdiction (ISO 3166-1 alpha-2, Greece GR)",
            code=ErrorCode.UNKNOWN_JURISDICTION,
        ) from None


def _age_at(value: str | AgeAt | None) -> str | None:
    if value is None:
        return None
    try:
        return AgeAt(str(value).strip().upper()).value
    except ValueError:
        raise InvalidQuery(
            "age_at is INDEX_EVENT or REFERENCE_DATE", code=ErrorCode.INVALID_ARGUMENT
        ) from None


def _noise(value: str | NoiseLevel | None) -> str | None:
    if value is None:
        return None
    try:
        return NoiseLevel(str(value).upper()).value
    except ValueError:
        raise InvalidQuery("noise is STANDARD or COARSE", code=ErrorCode.INVALID_ARGUMENT) from None
