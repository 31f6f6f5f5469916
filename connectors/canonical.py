"""The canonical form of a question's table: what makes two tables "the same question".

A stored answer (`connectors.answers`) is found again by a digest of its table's canonical
question: the measure, the criteria with every list whose order means nothing sorted (codes
ANDed together, `anyOf` groups ORed together), the reference date, and the table's dimensions
in their canonical order. So a question asked again — or in another order, or as part of another
question (a total asked alone and next to breakdowns) — gets the same numbers for free, while
a question that differs in any way is another question, with noise of its own, paid for.

An explicit index (`CohortQuery.index`) chooses the cohort and dates its persons: it is part of
every question that has one, its alternative events and each one's codes sorted (ORed
together), as criteria relative to it are (ANDed together). Without one, the index event (the
first top-level event criterion: `Criteria.index_event`) dates persons for a dimension that
reads it (CALENDAR_YEAR), so for such tables it is part of the question.
When ages are taken (at the reference date or at the index event: `CohortQuery.age_basis`) is
part of every question that names an age, in its criteria or in a dimension that reads it (the
age bands), or days of observation before that date. What a dimension reads is its SQL
entry's (`connectors.compiler.dimensions`). A variable's statistics (`schema.query.STATISTICS`),
and tables by its bins (VALUE_BIN), name the variable, bounds and bins included, and for age
the age basis. An incidence rate's events and days at risk (`schema.query.RATES`) name its
outcome: the event, its codes sorted, and the follow-up window. Where a rate's person-time is
split by age and year (`schema.lexis`), its events and days in a table by an age band or a year
say so, and every table's count of persons names the outcome and the count's sensitivity (a
person counted in each cell they are at risk in, its noise scaled to match). Tables by
FOLLOW_UP name the survival question: its outcome (codes sorted), intervals and maximum.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import orjson

from connectors.compiler.dimensions import DIMENSION_SQL, PersonColumn
from schema.codes import Dimension, MeasureKind
from schema.lexis import split_table, splits
from schema.measures import MEASURES
from schema.query import RATES, STATISTICS, Breakdown, CohortQuery, Criteria
from schema.variables import VariableSource

# Part of every digest: a change of what a digest means makes a new version, so that stored
# answers are never read under another meaning.
VERSION: Final = 2  # 2: ages may be taken at the index event (`CohortQuery.age_basis`)
_ORDER: Final = {d: i for i, d in enumerate(Dimension)}
# Counts were the only measure when their answers were first stored: their digests name no
# measure, so that those answers are found again.
_UNNAMED: Final = frozenset({MeasureKind.PERSON_COUNT})


def canonical_breakdown(by: Breakdown) -> Breakdown:
    return tuple(sorted(by, key=_ORDER.__getitem__))


def question_digest(
    query: CohortQuery, by: Breakdown, measure: MeasureKind = MeasureKind.PERSON_COUNT
) -> str:
    """The digest naming the values of `measure` in table `by` of `query`."""
    document: dict[str, Any] = {
        "version": VERSION,
        "criteria": _criteria(query.criteria),
        "reference_date": query.reference_date.isoformat(),
        "by": [d.value for d in canonical_breakdown(by)],
    }
    if measure not in _UNNAMED:
        document["measure"] = measure.value
    variable = query.variable
    if splits(query) and split_table(by) and measure in STATISTICS:
        # Beside a split rate (`schema.lexis`), a person's value is in the cell of their first
        # day at risk, their exact age's: not the plain variable's cells.
        document["split"] = "lexis"
    if variable is not None and (measure in STATISTICS or _reads(by, "value_bin")):
        # The variable's statistics are of its definition and bounds; ages are the age
        # date's (the age basis below).
        document["variable"] = variable.model_dump(mode="json")
        if variable.source is VariableSource.AGE:
            document["age_at"] = query.age_basis.value
    if _reads(by, "age") or _reads_age_date(query.criteria):
        # Ages (and observation before the age date) at the reference date and at the index
        # event are different questions.
        document["age_at"] = query.age_basis.value
    if query.outcome is not None and measure in RATES:
        # An incidence rate's events and days are of its outcome and follow-up window (the
        # cell's count of persons is not: the same cohort's).
        document["outcome"] = _outcome(query)
        if splits(query) and split_table(by):
            document["split"] = "lexis"
    if splits(query) and measure is MeasureKind.PERSON_COUNT:
        # Persons at risk in each cell of a split table, at a sensitivity of the question's
        # tables: neither a plain count's nor another question's.
        document["outcome"] = _outcome(query)
        document["persons_sensitivity"] = MEASURES[measure].sensitivity(query)
    if query.survival is not None and _reads(by, "follow_up"):
        # Exits from follow-up are of the outcome, the intervals and the maximum.
        survival = query.survival.model_dump(mode="json")
        survival["outcome"] = _spec(survival["outcome"])
        document["survival"] = survival
    if query.index is not None:
        index_data = query.index.model_dump(mode="json")
        index_data["events"] = _sorted_unique([_spec(e) for e in index_data["events"]])
        document["index"] = index_data
    elif _reads(by, "index_date"):
        index = query.criteria.index_event()
        document["index_event"] = None if index is None else index.model_dump(mode="json")
    text = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()


def _outcome(query: CohortQuery) -> dict[str, Any]:
    assert query.outcome is not None
    outcome = query.outcome.model_dump(mode="json")
    outcome["event"] = _spec(outcome["event"])
    return dict(outcome)


def _reads(by: Breakdown, column: PersonColumn) -> bool:
    """Whether a dimension of `by` a node computes reads the person's `column`."""
    return any(column in DIMENSION_SQL[d].reads for d in by if d in DIMENSION_SQL)


def _criteria(criteria: Criteria) -> dict[str, Any]:
    data = criteria.model_dump(mode="json", exclude={"any_of"})
    for name in ("conditions", "drugs", "measurements"):
        data[name] = _sorted_unique(data[name])
    data["any_of"] = _sorted_unique([_criteria(group) for group in criteria.any_of])
    if "relative" in data:
        data["relative"] = _sorted_unique(
            [{**r, "event": _spec(r["event"])} for r in data["relative"]]
        )
    return data


def _spec(spec: dict[str, Any]) -> dict[str, Any]:
    """An event spec's dump with its concept sets' codes sorted (a union: order means nothing)."""
    return {
        **spec,
        "codes": _sorted_unique(spec["codes"]),
        "excluded": _sorted_unique(spec["excluded"]),
    }


def _reads_age_date(criteria: Criteria) -> bool:
    """Whether the criteria name an age or observation before the date ages are taken at."""
    return (
        criteria.age is not None
        or criteria.prior_observation_days is not None
        or any(_reads_age_date(g) for g in criteria.any_of)
    )


def _sorted_unique(items: list[Any]) -> list[Any]:
    encoded = {orjson.dumps(item, option=orjson.OPT_SORT_KEYS): item for item in items}
    return [encoded[key] for key in sorted(encoded)]
