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
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from schema.code_ranges import RANGE_VOCABULARIES
from schema.codes import AgeAt, Dimension, Jurisdiction, NoiseLevel, Sex, Vocabulary
from schema.errors import ErrorCode
from tessera.client.errors import InvalidQuery

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
) -> dict[str, Any]:
    """A `CriteriaInput`: every criterion given must hold. `concepts` go where their
    vocabulary says (ICD10/SNOMED: conditions, ATC/RxNorm: drugs, LOINC: measurements);
    `conditions`, `drugs`, `measurements` say it themselves."""
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
    return result


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
    bin_width=0.5)`. Bounds and bin widths are within the variable's registry entry (see the
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
        return data


def _variable(source: str, **bounds: float | None) -> dict[str, Any]:
    names = {"lo": "lo", "hi": "hi", "bin_width": "binWidth"}
    return {"source": source, **{names[k]: v for k, v in bounds.items() if v is not None}}


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
    variable: Mapping[str, Any] | None = None,
    summary: bool = True,
) -> Question:
    """The document of one cohort question: `queryId traceId`, the pooled `count` (when
    `total`: a securely pooled count costs privacy budget of its own), every node's status,
    latency, own count (when `countries`: next to a securely pooled count, each country's own
    is a release of its own, charged) and privacy spend, and one aliased breakdown per table
    (`b0`, `b1`, …). With `variable` (`Variable`), its `summary` pooled, per country and per
    cell (unless `summary=False`: then only its histograms, each table by VALUE_BIN with its
    `quantiles`)."""
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
        ("variable", "VariableInput", None if variable is None else dict(variable)),
    ]
    for name, kind, value in optional:
        if value is not None:
            declared.append(f"${name}: {kind}")
            arguments.append(f"{name}: ${name}")
            variables[name] = value
    summarised = variable is not None and summary
    cell_summary = f" {SUMMARY_FIELDS}" if summarised else ""
    tables = "\n".join(
        f"    b{i}: breakdown(by: [{', '.join(d.value for d in table)}]) "
        f"{{ by cells {{ dimensions {{ name value }} count {{ {COUNT_FIELDS} }}{cell_summary} }}"
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
        + "    byJurisdiction { jurisdiction status latencyMs error\n"
        "      reasons { rule jurisdiction message }\n"
        + (f"      count {{ {COUNT_FIELDS} }}\n" if countries else "")
        + (f"      {SUMMARY_FIELDS}\n" if summarised else "")
        + "      privacy { sigma questionRho spentRho capRho dataRelease } }\n"
        + (tables + "\n" if tables else "")
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
