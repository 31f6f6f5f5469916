"""The pooled survival curve, before protection, equals lifelines on the union of four nodes'
data (synthetic CDMs of FR, DE, FI and DK) at every released time point, and so does the
log-rank test between the sexes: each node's exact exits from follow-up (its compiled
statement, on its own database) added up, then `gateway.survival`, against lifelines'
`KaplanMeierFitter` and `logrank_test` on each person's follow-up found by the reference
implementation (`tests.connectors.reference_kit`: the cohort and index dates) and plain Python
here (the first outcome on or after the index date, the end of the observation period holding
it). The curve is that of the times grouped to the intervals: each time is taken at the end of
its interval, as the nodes' cells say it, and lifelines is given them so."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import duckdb
import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test, multivariate_logrank_test

from connectors.compiler import DUCKDB, ConceptSet, compile_concept_lookup, compile_query
from gateway.survival import Exits, kaplan_meier, log_log_band, log_rank
from schema.codes import Dimension, EventDomain, Jurisdiction, MeasureKind, Vocabulary
from schema.query import Code, CohortQuery, Criteria, EventSpec, IndexEvent, Survival
from schema.survival import Exit, exit_key, interval_starts
from synth import generate
from tests.connectors.survival_kit import followed, grouped

PERSONS = 3_000
NODES = (Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK)
REFERENCE_DATE = dt.date(2025, 1, 1)


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    directory = tmp_path_factory.mktemp("survival")
    paths = []
    for i, jurisdiction in enumerate(NODES):
        path = directory / f"{jurisdiction.value.lower()}.duckdb"
        generate(
            path,
            jurisdiction=jurisdiction,
            persons=PERSONS,
            seed=300 + i,
            state=path.with_suffix(".state"),
        )
        paths.append(path)
    return paths


def question(index: EventSpec, outcome: EventSpec, width: int, top: int) -> CohortQuery:
    return CohortQuery(
        criteria=Criteria(),
        reference_date=REFERENCE_DATE,
        index=IndexEvent(events=[index]),
        tables=[(Dimension.FOLLOW_UP,), (Dimension.FOLLOW_UP, Dimension.SEX)],
        survival=Survival(outcome=outcome, interval_days=width, max_days=top),
    )


QUESTIONS = {
    "death_after_type_2_diabetes_yearly": question(
        EventSpec(
            domain=EventDomain.CONDITION, codes=[Code(vocabulary=Vocabulary.ICD10, code="E11")]
        ),
        EventSpec(domain=EventDomain.DEATH),
        365,
        3650,
    ),
    "death_after_covid_monthly": question(
        EventSpec(
            domain=EventDomain.CONDITION, codes=[Code(vocabulary=Vocabulary.ICD10, code="U07.1")]
        ),
        EventSpec(domain=EventDomain.DEATH),
        30,
        360,
    ),
    "heart_failure_after_type_2_diabetes_quarterly": question(
        EventSpec(
            domain=EventDomain.CONDITION, codes=[Code(vocabulary=Vocabulary.ICD10, code="E11")]
        ),
        EventSpec(
            domain=EventDomain.CONDITION, codes=[Code(vocabulary=Vocabulary.ICD10, code="I50")]
        ),
        90,
        1800,
    ),
}

Cells = Counter[tuple[str, ...]]


def node_cells(path: Path, query: CohortQuery) -> Cells:
    """One node's exact count per cell, as its statement computes them."""
    compiled = compile_query(query, dialect=DUCKDB)
    with duckdb.connect(str(path), read_only=True) as con:
        ids: dict[ConceptSet, list[int]] = {}
        for concept_set in compiled.concept_sets:
            lookup = compile_concept_lookup(concept_set, dialect=DUCKDB)
            ids[concept_set] = [
                r[0] for r in con.execute(lookup.sql, list(lookup.params)).fetchall()
            ]
        bound = compiled.bind(ids)
        rows = con.execute(bound.sql, list(bound.params)).fetchall()
    cells: Cells = Counter()
    for _, table in compiled.tabulate(rows):
        for cell in table:
            cells[cell.key] += cell.values[MeasureKind.PERSON_COUNT]
    return cells


def exits(cells: Cells, survival: Survival, group: tuple[str, ...] = ()) -> Exits:
    starts = interval_starts(survival.interval_days, survival.max_days)

    def count(key: str) -> float:
        return float(cells[(key, *group)])

    events = tuple(count(exit_key(s, Exit.EVENT)) for s in starts)
    censored = tuple(count(exit_key(s, Exit.CENSORED)) for s in starts)
    cell_count = 2 * len(starts) + 1
    return Exits(
        events=events,
        censored=censored,
        at_end=count(exit_key(survival.max_days, Exit.AT_RISK)),
        variances=(0.0,) * cell_count,
        imputed=(0.0,) * cell_count,
        rounding=(0.0,) * cell_count,
        statuses=(),
        reasons=(),
    )


@pytest.mark.parametrize("name", sorted(QUESTIONS))
def test_pooled_curve_equals_lifelines(databases: list[Path], name: str) -> None:
    query = QUESTIONS[name]
    survival = query.survival
    assert survival is not None
    pooled: Cells = Counter()
    persons: list[tuple[str, int, bool]] = []
    for path in databases:
        pooled.update(node_cells(path, query))
        persons += followed(path, query)
    assert sum(pooled[(k,)] for k in _keys(survival)) == len(persons) > 50
    events = sum(e for _, _, e in persons)
    assert events >= 10, "a curve worth testing has events"

    for group in ((), ("FEMALE",), ("MALE",)):
        chosen = [p for p in persons if not group or p[0] == group[0]]
        ours = exits(pooled, survival, group)
        curve = kaplan_meier(ours.events, ours.censored, ours.at_end)
        fitter = KaplanMeierFitter().fit(
            [grouped(t, e, survival) for _, t, e in chosen], [e for _, _, e in chosen]
        )
        ends = [
            s + survival.interval_days
            for s in interval_starts(survival.interval_days, survival.max_days)
        ]
        expected = fitter.survival_function_at_times(ends).to_numpy()
        got = np.array(curve.survival, dtype=float)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
        # The band, where lifelines has one (it has none before the first event).
        bands = fitter.confidence_interval_survival_function_
        for k, end in enumerate(ends):
            s, g = curve.survival[k], curve.greenwood[k]
            assert s is not None
            assert g is not None
            if end not in bands.index or not 0 < s < 1:
                continue
            low, high = log_log_band(s, g)
            row = bands.loc[end]
            assert low == pytest.approx(row.iloc[0], rel=1e-9)
            assert high == pytest.approx(row.iloc[1], rel=1e-9)

    females = [p for p in persons if p[0] == "FEMALE"]
    males = [p for p in persons if p[0] == "MALE"]
    statistic, df = log_rank(
        [exits(pooled, survival, ("FEMALE",)), exits(pooled, survival, ("MALE",))]
    )
    test = logrank_test(
        [grouped(t, e, survival) for _, t, e in females],
        [grouped(t, e, survival) for _, t, e in males],
        [e for _, _, e in females],
        [e for _, _, e in males],
    )
    assert df == 1
    assert statistic == pytest.approx(test.test_statistic, rel=1e-9)


def test_three_groups_equal_the_multivariate_log_rank() -> None:
    """More than two groups: the multivariate form, as lifelines'."""
    rng = np.random.default_rng(7)
    survival = Survival(outcome=EventSpec(domain=EventDomain.DEATH), interval_days=30, max_days=360)
    times, events, labels, groups = [], [], [], []
    for label, scale in (("a", 200), ("b", 300), ("c", 500)):
        time = rng.exponential(scale, 300).astype(int)
        event = rng.random(300) < 0.7
        keys: Cells = Counter()
        for t, e in zip(time, event, strict=True):
            if t >= survival.max_days:
                keys[(exit_key(survival.max_days, Exit.AT_RISK),)] += 1
            else:
                start = t - t % survival.interval_days
                keys[(exit_key(int(start), Exit.EVENT if e else Exit.CENSORED),)] += 1
            times.append(grouped(int(t), bool(e and t < survival.max_days), survival))
            events.append(bool(e and t < survival.max_days))
            labels.append(label)
        groups.append(exits(keys, survival))
    statistic, df = log_rank(groups)
    expected = multivariate_logrank_test(times, labels, events)
    assert df == 2
    assert statistic == pytest.approx(expected.test_statistic, rel=1e-9)


def _keys(survival: Survival) -> list[str]:
    starts = interval_starts(survival.interval_days, survival.max_days)
    return [
        *(exit_key(s, x) for s in starts for x in (Exit.EVENT, Exit.CENSORED)),
        exit_key(survival.max_days, Exit.AT_RISK),
    ]
