"""The measure registries are complete: every `MeasureKind` has its spec (`schema.measures`),
its disclosure rules (`policies.measures`) and its SQL (`connectors.compiler.measures`), and
nothing else has any (docs/adding-a-measure.md lists them)."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from connectors.compiler import compile_query
from connectors.compiler.compiled import GROUPING_COLUMN
from connectors.compiler.dimensions import DIMENSION_SQL
from connectors.compiler.measures import MEASURE_SQL
from policies.measures import PROTECTIONS
from schema.codes import Dimension, MeasureKind, Vocabulary
from schema.dimensions import DIMENSIONS
from schema.measures import MEASURES, asked
from schema.query import RATES, Code, CohortQuery, Criteria, Measure, NumericVariable, Outcome
from schema.variables import AGE, MAX_EDGE_UNITS, MEASUREMENTS, VariableSource, bin_key

KINDS = set(MeasureKind)


@pytest.mark.parametrize(
    ("registry", "where"),
    [
        (MEASURES, "schema.measures.MEASURES"),
        (PROTECTIONS, "policies.measures.PROTECTIONS"),
        (MEASURE_SQL, "connectors.compiler.measures.MEASURE_SQL"),
    ],
)
def test_every_measure_has_an_entry_in_every_registry(
    registry: dict[MeasureKind, object], where: str
) -> None:
    assert set(registry) == KINDS, f"{where} must have exactly one entry per MeasureKind"


def test_each_spec_is_its_own_kinds_and_sane() -> None:
    for kind, spec in MEASURES.items():
        assert spec.kind is kind
        assert spec.minimum <= spec.maximum
        assert spec.sensitivity(_WITH_AGE) >= 1
        # A value that pools: one node's value alone pools to itself.
        assert spec.pooled([spec.minimum]) == spec.minimum


# Not a question one may ask (a variable and a rate together): what every sensitivity reads.
_WITH_AGE = CohortQuery.model_construct(
    criteria=Criteria(),
    reference_date=dt.date(2024, 6, 30),
    measures=[Measure(kind=k) for k in MeasureKind],
    variable=NumericVariable(source=VariableSource.AGE, lo=18, hi=90),
    outcome=Outcome.model_validate(
        {"event": {"domain": "DEATH"}, "window": {"start_days": 1, "end_days": 21}}
    ),
)
_COUNTS_AND_STATISTICS = [k for k in MeasureKind if k not in RATES]


def test_a_sums_sensitivity_is_the_most_one_clipped_value_moves_it() -> None:
    # Ages 18..90 in years: centre 54, |u| <= 36; u^2 in [0, 1296], less 648: at most 648.
    assert MEASURES[MeasureKind.VALUE_N].sensitivity(_WITH_AGE) == 1
    assert MEASURES[MeasureKind.VALUE_SUM].sensitivity(_WITH_AGE) == 36
    assert MEASURES[MeasureKind.VALUE_SUM_SQUARES].sensitivity(_WITH_AGE) == 648


def test_days_at_risk_move_by_at_most_the_follow_up_window() -> None:
    # Days 1 to 21 after the index, both included: 21 days at most.
    assert MEASURES[MeasureKind.PERSON_DAYS].sensitivity(_WITH_AGE) == 21
    assert MEASURES[MeasureKind.OUTCOME_EVENTS].sensitivity(_WITH_AGE) == 1


def test_each_measure_has_a_result_column_of_its_own() -> None:
    columns = [sql.column for sql in MEASURE_SQL.values()]
    taken = {GROUPING_COLUMN, *(sql.column for sql in DIMENSION_SQL.values())}
    assert len(set(columns)) == len(columns)
    assert not taken & set(columns)


def test_a_compiled_query_names_a_column_for_each_measure_it_asks() -> None:
    query = CohortQuery(
        criteria=Criteria(),
        reference_date=dt.date(2024, 6, 30),
        tables=[(Dimension.SEX,)],
        measures=[Measure(kind=k) for k in _COUNTS_AND_STATISTICS],
        variable=NumericVariable(source=VariableSource.AGE),
    )
    compiled = compile_query(query)
    assert asked(query) == tuple(_COUNTS_AND_STATISTICS)
    assert compiled.measures == tuple((k, MEASURE_SQL[k].column) for k in _COUNTS_AND_STATISTICS)
    assert compiled.columns == (
        GROUPING_COLUMN,
        "sex",
        *(MEASURE_SQL[k].column for k in _COUNTS_AND_STATISTICS),
    )
    rates = (MeasureKind.PERSON_COUNT, *RATES)
    rate = CohortQuery.model_validate(
        {
            "criteria": {},
            "reference_date": dt.date(2024, 6, 30),
            "index": {"events": [{"domain": "VISIT", "visit": "INPATIENT"}]},
            "outcome": {"event": {"domain": "DEATH"}, "window": {"start_days": 0, "end_days": 30}},
            "measures": [{"kind": k} for k in rates],
            "tables": [(Dimension.SEX,)],
        }
    )
    assert compile_query(rate).columns == (
        GROUPING_COLUMN,
        "sex",
        *(MEASURE_SQL[k].column for k in rates),
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"outcome": None}, "needs its outcome"),
        ({"index": None}, "starts at an index event"),
        ({"measures": [{"kind": "PERSON_COUNT"}]}, "ask it"),
        ({"measures": [{"kind": "OUTCOME_EVENTS"}]}, "asked together"),
        (
            {
                "outcome": {
                    "event": {"domain": "DEATH"},
                    "window": {"start_days": -1, "end_days": 3},
                }
            },
            "on the index date or after",
        ),
        (
            {
                "outcome": {
                    "event": {"domain": "DEATH"},
                    "window": {"start_days": 0, "end_days": 3653},
                }
            },
            "within 3653 days",
        ),
    ],
)
def test_a_rate_is_asked_whole_from_an_index(change: dict[str, object], problem: str) -> None:
    question = {
        "criteria": {},
        "reference_date": dt.date(2024, 6, 30),
        "index": {"events": [{"domain": "VISIT", "visit": "INPATIENT"}]},
        "outcome": {"event": {"domain": "DEATH"}, "window": {"start_days": 0, "end_days": 30}},
        "measures": [{"kind": k} for k in (MeasureKind.PERSON_COUNT, *RATES)],
    }
    with pytest.raises(ValidationError, match=problem):
        CohortQuery.model_validate(question | change)


def test_every_registered_variables_bins_have_keys_a_node_may_send() -> None:
    # Bin keys are lower edges from 0 to MAX_EDGE_UNITS units, with 0 or 1 decimal.
    for spec in (AGE, *MEASUREMENTS.values()):
        assert spec.decimals in (0, 1), spec.name
        assert 0 <= spec.lo < spec.hi, spec.name
        assert spec.units(spec.hi) <= MAX_EDGE_UNITS, spec.name
        for width in spec.bin_widths:
            assert spec.units(width) > 0, spec.name
        # Every bin of the widest bounds at every width is a key the gateway accepts.
        for width in spec.bin_widths:
            variable = NumericVariable(
                source=VariableSource.AGE if spec is AGE else VariableSource.MEASUREMENT,
                code=None
                if spec is AGE
                else Code(
                    vocabulary=Vocabulary.LOINC,
                    code=next(c for c, s in MEASUREMENTS.items() if s is spec),
                ),
                lo=spec.lo,
                hi=spec.lo + width * ((spec.hi - spec.lo) // width),
                bin_width=width,
            )
            edges = [bin_key(e, spec.decimals) for e in variable.bin_edges()]
            assert set(edges) <= DIMENSIONS[Dimension.VALUE_BIN].keys, spec.name


def test_a_variable_at_an_explicit_index_is_asked_and_its_window_needs_one() -> None:
    # Taken at each person's index date (`connectors.compiler.cohort._value_at_index`).
    index = {"events": [{"domain": "CONDITION", "codes": [{"vocabulary": "ICD10", "code": "E11"}]}]}
    base = {
        "criteria": {},
        "reference_date": dt.date(2024, 6, 30),
        "measures": [{"kind": k} for k in _COUNTS_AND_STATISTICS],
    }
    hba1c = {
        "source": "MEASUREMENT",
        "code": {"vocabulary": "LOINC", "code": "4548-4"},
        "index_window": {"start_days": -365, "end_days": 0},
    }
    for variable in ({"source": "AGE"}, hba1c):
        query = CohortQuery.model_validate({**base, "index": index, "variable": variable})
        assert query.variable is not None
    with pytest.raises(ValidationError, match="relative to an index event"):
        CohortQuery.model_validate({**base, "variable": hba1c})
