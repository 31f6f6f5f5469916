"""The attack simulator's parts (bench/attacks), without processes: the truth it computes,
how it reads releases, the solvers of its attackers and its verdict rule. The whole runs in
tests/integration/test_attack_simulator.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pytest

from bench.attacks.budget import Budget, cover
from bench.attacks.client import Answer, NodeAnswer, Released, features
from bench.attacks.estimate import (
    CERTAIN,
    Reading,
    combine,
    decide,
    difference,
    equality_score,
    score,
    uniform,
)
from bench.attacks.margins import domain, row
from bench.attacks.pair_noise import rmse_row
from bench.attacks.pairs import Asked
from bench.attacks.solve import LinearAttack
from bench.attacks.targets import Cohorts, death_trials, decedents, outside, singled_out
from bench.attacks.truth import FEMALE_CONCEPT, MALE_CONCEPT, NodeTruth
from bench.attacks.verdict import (
    GUARANTEED,
    HELD,
    PINNED,
    CountTarget,
    Trial,
    at_least_by_chance,
    count_row,
    membership_row,
)
from bench.attacks.where import Death, Event, Where, in_month, month_of, union
from schema.codes import Dimension, Jurisdiction

FR = Jurisdiction.FR


# -- criteria ---------------------------------------------------------------------------------
def test_criteria_render_as_the_public_query_language() -> None:
    where = union(
        Where(sex="FEMALE", age_min=70, age_max=79, conditions=(in_month("U07", 2021, 3),)),
        Where(age_min=20),
    )
    assert where.graphql() == (
        "{ anyOf: [{ sex: FEMALE, age: { min: 70, max: 79 }, conditions: [{ vocabulary: ICD10, "
        'code: "U07", window: { start: "2021-03-01", end: "2021-03-31" } }] }, '
        "{ age: { min: 20 } }] }"
    )
    assert Where(conditions=(Event("E11"),), spell_open_age=True).graphql() == (
        '{ age: { min: 0 }, conditions: [{ vocabulary: ICD10, code: "E11" }] }'
    )
    assert Where(
        conditions=(Event("E11", at_least=2), Event("G40", exclude=True)),
        death=Death(dt.date(2021, 6, 1), exclude=True),
    ).graphql() == (
        '{ conditions: [{ vocabulary: ICD10, code: "E11", atLeast: 2 }, '
        '{ vocabulary: ICD10, code: "G40", exclude: true }], '
        'death: { window: { start: "2021-06-01" }, exclude: true } }'
    )


def test_december_windows_end_on_the_last_day_of_the_year() -> None:
    assert in_month("I10", 2020, 12) == Event("I10", dt.date(2020, 12, 1), dt.date(2020, 12, 31))


def test_the_complement_of_bands_is_written_with_ranges() -> None:
    assert outside((40, 49), (10, 19)) == union(
        Where(age_min=0, age_max=9), Where(age_min=20, age_max=39), Where(age_min=50)
    )
    assert outside((0, 9)) == union(Where(age_min=10))


def test_padding_cohorts_are_fresh_and_avoid_the_bands_given() -> None:
    cohorts = Cohorts()
    windows = [cohorts.window((30, 39)) for _ in range(200)]
    assert len(set(windows)) == 200
    assert all(high < 30 or low > 39 for low, high in windows)


# -- the truth ----------------------------------------------------------------------------------
@pytest.fixture
def node(tmp_path: Path) -> NodeTruth:
    """Five persons: 1 F 1950 with E11.9 twice in 2020-03 (the second record coded E11 and
    E11.9); 2 F 1950 with E11 in 2021-05 and G40; 3 M 1990 with U07.1, died 2021-06; 4 F 1980
    with E11, opted out, died 2021-06; 5 born after the reference year."""
    path = tmp_path / "node.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE person (person_id BIGINT, gender_concept_id INT, year_of_birth INT)"
        )
        con.execute(
            "INSERT INTO person VALUES (1, ?, 1950), (2, ?, 1950), (3, ?, 1990), (4, ?, 1980), "
            "(5, ?, 2030)",
            [FEMALE_CONCEPT, FEMALE_CONCEPT, MALE_CONCEPT, FEMALE_CONCEPT, MALE_CONCEPT],
        )
        con.execute("CREATE TABLE concept (concept_id INT, vocabulary_id TEXT, concept_code TEXT)")
        con.execute(
            "INSERT INTO concept VALUES (10, 'ICD10', 'E11'), (11, 'ICD10', 'E11.9'), "
            "(12, 'ICD10', 'G40'), (13, 'ICD10', 'U07.1'), (99, 'SNOMED', '44054006')"
        )
        con.execute(
            "CREATE TABLE condition_occurrence (condition_occurrence_id BIGINT, "
            "person_id BIGINT, condition_concept_id INT, condition_source_concept_id INT, "
            "condition_start_date DATE)"
        )
        con.execute(
            "INSERT INTO condition_occurrence VALUES (1, 1, 99, 11, DATE '2020-03-15'), "
            "(2, 2, 10, 0, DATE '2021-05-01'), (3, 2, 0, 12, DATE '2019-01-01'), "
            "(4, 3, 0, 13, DATE '2020-11-30'), (5, 4, 99, 10, DATE '2020-01-01'), "
            "(6, 5, 99, 10, DATE '2020-01-01'), (7, 1, 10, 11, DATE '2020-03-20')"
        )
        con.execute("CREATE TABLE death (person_id BIGINT, death_date DATE)")
        con.execute("INSERT INTO death VALUES (3, DATE '2021-06-10'), (4, DATE '2021-06-02')")
        con.execute("CREATE TABLE tessera_optout (person_id BIGINT)")
        con.execute("INSERT INTO tessera_optout VALUES (4)")
    return NodeTruth.load(path)


def test_the_truth_counts_persons_as_the_query_model_defines_them(node: NodeTruth) -> None:
    e11 = Event("E11")
    # Subcodes match, the record's concept counts too (person 2), opted-out persons and
    # persons born after the reference year never count.
    assert node.count(Where(conditions=(e11,))) == 2
    assert node.count(Where(conditions=(Event("E11", dt.date(2021, 1, 1)),))) == 1
    assert node.count(Where(conditions=(in_month("E11", 2020, 3),))) == 1
    assert node.count(Where(sex="MALE")) == 1
    assert node.count(Where(age_min=76, age_max=76)) == 2
    assert node.count(Where(age_max=75)) == 1
    assert node.count(Where(conditions=(e11,), any_of=(Where(sex="MALE"), Where(age_min=70)))) == 2
    assert node.count(union(Where(conditions=(Event("G40"),)), Where(sex="MALE"))) == 2


def test_the_truth_counts_records_and_deaths_as_the_query_model_defines_them(
    node: NodeTruth,
) -> None:
    # A record coded under two concepts counts once.
    assert node.count(Where(conditions=(Event("E11", at_least=2),))) == 1
    assert node.count(Where(conditions=(Event("E11", at_least=3),))) == 0
    assert node.count(Where(conditions=(Event("E11", exclude=True),))) == 1
    assert node.count(Where(conditions=(Event("E11", at_least=2, exclude=True),))) == 2
    # The opted-out person's death is not counted.
    assert node.count(Where(death=Death())) == 1
    assert node.count(Where(death=Death(*month_of(2021, 6)))) == 1
    assert node.count(Where(death=Death(dt.date(2022, 1, 1)))) == 0
    assert node.count(Where(death=Death(exclude=True))) == 2


def test_known_decedents_are_alone_in_their_description(node: NodeTruth) -> None:
    (decedent,) = decedents(node, FR)
    assert node.person_id[decedent.index] == 3
    assert decedent.died == Death(dt.date(2021, 6, 1), dt.date(2021, 6, 30))
    assert node.count(decedent.alone) == 1


def test_decedents_without_a_diagnosis_are_asked_about_the_members_diagnoses() -> None:
    """Members' diagnoses are the common ones: were the others asked about other (rare)
    diagnoses, the diagnosis alone would tell them apart (a rare one's answers all LOW)."""
    persons = 40
    # Person p: born 1930 + p, died in month p of 2020/21 (alone in that); the first 30
    # have I10, persons 0 and 1 G40 too; nobody has C49.
    has = [(p, "I10") for p in range(30)] + [(0, "G40"), (1, "G40")]
    codes = ["C49", "G40", "I10"]
    node = NodeTruth(
        person_id=np.arange(1, persons + 1, dtype=np.int64),
        female=np.zeros(persons, dtype=bool),
        male=np.ones(persons, dtype=bool),
        year_of_birth=1930 + np.arange(persons, dtype=np.int64),
        counted=np.ones(persons, dtype=bool),
        event_person=np.array([p for p, _ in has], dtype=np.int64),
        event_code=np.array([codes.index(c) for _, c in has], dtype=np.int32),
        event_day=np.full(len(has), 17_000, dtype=np.int64),
        event_occurrence=np.arange(len(has), dtype=np.int64),
        codes=codes,
        death_person=np.arange(persons, dtype=np.int64),
        death_day=18_300 + 31 * np.arange(persons, dtype=np.int64),
    )
    for seed in range(5):
        trials = death_trials(
            {FR: node},
            per_jurisdiction=8,
            rng=np.random.default_rng(seed),
            codes=("G40", "C49", "F84", "I10"),
        )
        members = sorted(t.code for t in trials if t.member)
        others = sorted(t.code for t in trials if not t.member)
        assert len(members) == len(others) == 4
        assert members == others
        assert len({t.decedent.index for t in trials}) == 8


def test_persons_singled_out_are_alone_in_their_description(node: NodeTruth) -> None:
    people = list(singled_out(node, FR, avoid=("G40",)))
    # Persons 1 and 2 share sex and year of birth but not the month of a record; person 3 is
    # alone; the opted-out and the unborn are not counted, so never singled out.
    assert sorted(node.person_id[p.index] for p in people) == [1, 2, 3]
    for person in people:
        assert node.count(person.alone) == 1
        assert person.event.code != "G40"


# -- reading releases ---------------------------------------------------------------------------
def test_the_schema_read_at_run_time_names_what_counts_carry() -> None:
    found = features()
    assert {"bound", "sd"} <= set(found.count_fields)
    assert {"EXACT", "SUPPRESSED", "LOW"} <= found.statuses
    assert "criteria" in found.cohort_arguments


def test_a_released_values_variance_is_its_sd_else_its_bound_else_none() -> None:
    assert Released(10, "PERTURBED", sd=5.0, bound=2.0).variance == 25.0
    assert Released(10, "PERTURBED", bound=3.0).variance == 3.0
    assert Released(10, "EXACT").variance == 0.0


def test_a_difference_needs_every_number_released() -> None:
    a, b = Released(100, "EXACT"), Released(97, "PERTURBED", bound=3.0)
    assert difference([a], [b]) == Reading(3.0, 3.0)
    assert difference([a], [Released(None, "SUPPRESSED")]) is None
    assert difference([a, None], [b]) is None


def _answer(value: int) -> Answer:
    released = Released(value, "PERTURBED", sd=5.0)
    return Answer(released, {FR: NodeAnswer(FR, "OK", frozenset(), released)}, {})


def test_a_pair_in_seven_wordings_with_three_draws_is_read_three_times() -> None:
    # Wordings the node canonicalises alike return the stored draw: the attacker keeps one
    # reading per distinct pair of answers, so its standard error is √(50 / 3), not √(50 / 7).
    drawn = [(105, 99), (105, 99), (97, 96), (101, 90), (97, 96), (97, 96), (97, 96)]
    asked = Asked(tuple((_answer(p), _answer(m)) for p, m in drawn))
    assert len(asked.distinct(FR)) == 3
    assert asked.reading(FR) == Reading((6 + 1 + 11) / 3, 50 / 3)


def test_an_rmse_is_judged_against_the_stated_standard_errors() -> None:
    def targets(error: float, n: int) -> list[CountTarget]:
        return [CountTarget(FR, "S", 2, 2 + error * (-1) ** i, 4.0) for i in range(n)]

    # Σ (error / SE)² is χ² with a degree per target: an RMSE at the SE is unremarkable, one
    # of 1.7 over 8 targets at SE 4 happens in fewer than 1% of runs, and over 120 in none.
    assert "P(this low | stated SE) 0.5" in rmse_row(targets(4.0, 120))
    assert "P(this low | stated SE) 0.00" in rmse_row(targets(1.7, 8))
    assert "P(this low | stated SE) 0.000" in rmse_row(targets(3.0, 120))
    assert rmse_row([CountTarget(FR, "S", 2, None, None)]) == "no estimates"


def test_readings_combine_by_inverse_variance_and_an_exact_one_wins() -> None:
    assert combine([Reading(0.0, 1.0), Reading(3.0, 2.0)]) == Reading(1.0, 2 / 3)
    assert combine([Reading(0.0, 1.0), Reading(2.0, 0.0)]) == Reading(2.0, 0.0)
    assert combine([None]) is None
    assert uniform(1, 2) == Reading(1.5, 0.25)


def test_membership_evidence() -> None:
    assert score(Reading(1.0, 0.0)) == CERTAIN
    assert score(Reading(0.0, 0.0)) == -CERTAIN
    assert score(Reading(3.0, 25.0)) == pytest.approx(0.1)
    assert equality_score(Released(40, "PERTURBED", sd=5.0), Released(40, "PERTURBED", sd=5.0)) < 0
    assert equality_score(Released(None, "LOW"), Released(40, "EXACT")) == 0.0
    assert decide([0.2, -CERTAIN]) is False
    assert decide([-0.3, 0.5]) is True


# -- the linear attacker ------------------------------------------------------------------------
def test_integer_programming_pins_a_suppressed_cell_from_margins() -> None:
    # Cells a, b, c, d of a 2 × 2 table: a is suppressed as small, the margins are exact.
    attack = LinearAttack(4)
    a, b, c, d = np.eye(4)
    attack.between(a, 1, 10)
    attack.between(b, 40, 40)
    attack.between(a + b, 43, 43)
    attack.between(c + d, 90, 90)
    assert attack.interval(a) == (3.0, 3.0)
    assert attack.read([a]) == [Reading(3.0, 0.0)]
    # d alone: only its row's total bounds it.
    assert attack.interval(d) == (0.0, 90.0)


def test_least_squares_averages_noisy_releases_and_knows_what_it_cannot_see() -> None:
    attack = LinearAttack(2)
    a, b = np.eye(2)
    attack.noisy(a, 4.0, 2.0)
    attack.noisy(a, 6.0, 2.0)
    attack.noisy(a + b, 50.0, 1e6)
    reading, other = attack.least_squares([a, b])
    assert reading is not None
    assert reading.estimate == pytest.approx(5.0)
    assert reading.variance == pytest.approx(2.0)
    assert other is not None  # b is seen through a + b, with a huge variance
    assert other.variance > 1e10
    blind = LinearAttack(2)
    blind.noisy(a + b, 50.0, 1.0)
    assert blind.least_squares([a]) == [None]


def test_a_margins_release_adds_up_the_finest_cells_it_covers() -> None:
    women_70s = row(Where(sex="FEMALE"), {Dimension.AGE_BAND_10: "70-79"})
    assert women_70s is not None
    assert women_70s.sum() == 2  # two 5-year bands of one sex
    assert row(Where(age_min=50), {}) is not None
    assert len(domain((Dimension.JURISDICTION, Dimension.SEX, Dimension.AGE_BAND_20))) == 3 * 6


# -- the verdict --------------------------------------------------------------------------------
def _count(truth: int, estimate: float | None, se: float | None = 2.0) -> CountTarget:
    return CountTarget(FR, "t", truth, estimate, se)


def test_small_counts_are_pinned_by_a_small_error_or_by_a_claim_that_holds() -> None:
    close = [_count(3, 3.4), _count(5, 4.5), _count(1, 1.2), _count(2, 2.9)] * 2
    assert count_row("FR", close).verdict == PINNED
    # Too few targets to tell a pin from luck.
    assert count_row("FR", close[:7]).verdict == HELD
    assert count_row("FR", [_count(3, 6.0), _count(5, 1.0), _count(1, 9.0)] * 3).verdict == HELD
    # Claimed to be within a person, and right, for three of them: pinned whatever the rest.
    claimed = [_count(3, 3.0, 0.0), _count(5, 5.0, 0.0), _count(1, 1.0, 0.0)]
    row = count_row("FR", [*claimed, _count(2, 40.0), _count(4, 40.0)])
    assert (row.verdict, row.claimed, row.claimed_rmse) == (PINNED, 3, 0.0)
    # Claimed, but wrong: held.
    wrong = [_count(3, 7.0, 0.5), _count(5, 1.0, 0.5), _count(1, 4.0, 0.5)]
    assert count_row("FR", wrong).verdict == HELD
    # No estimate is no pin; estimates are scored as they are (not clipped at zero).
    assert count_row("FR", [_count(2, None, None)] * 8).verdict == HELD
    assert _count(0, -3.0).error == -3.0


def _trials(hits: int, rejections: int, members: int, others: int | None = None) -> list[Trial]:
    found = [Trial(FR, "m", True, i < hits) for i in range(members)]
    return found + [Trial(FR, "o", False, i >= rejections) for i in range(others or members)]


def test_membership_is_pinned_above_85_percent_over_8_members_and_8_others() -> None:
    trials = _trials
    assert membership_row("FR", trials(8, 8, 8)).verdict == PINNED
    assert membership_row("FR", trials(8, 7, 8)).verdict == PINNED  # 94%
    assert membership_row("FR", trials(6, 7, 8)).verdict == HELD  # 81%
    assert membership_row("FR", trials(6, 8, 8)).accuracy == pytest.approx(0.875)
    assert membership_row("FR", trials(4, 4, 8)).accuracy == pytest.approx(0.5)
    # Two lucky guesses about members do not make a pin, however many others there are.
    assert membership_row("FR", trials(2, 28, 2, 28)).verdict == HELD


def test_membership_above_85_percent_that_an_attacker_at_the_cap_reaches_by_chance_is_held() -> (
    None
):
    # 14 of 8 + 8 right: an attacker right 69% of the time (all the cap allows) gets there
    # in 9% of runs.
    row = membership_row("FR", _trials(7, 7, 8))
    assert row.accuracy == pytest.approx(0.875)
    assert row.chance == pytest.approx(0.0875, abs=0.001)
    assert row.verdict == HELD
    # The same accuracy over 32 + 32 trials is far beyond chance.
    row = membership_row("FR", _trials(28, 28, 32))
    assert row.chance is not None
    assert row.chance < 1e-3
    assert row.verdict == PINNED
    # The tail: all right is the bound to the 16th; at least nothing is certain.
    assert at_least_by_chance(8, 8, 1.0) == pytest.approx(GUARANTEED**16)
    assert at_least_by_chance(8, 8, 0.0) == pytest.approx(1.0)
    # Unequal sides: each side's rate counts for half.
    assert at_least_by_chance(1, 3, 1.0, right=0.5) == pytest.approx(0.5**4)


# -- the attacker's account of its spend ----------------------------------------------------
def _charged(rho: float | None) -> Answer:
    privacy = None if rho is None else {"questionRho": rho, "capRho": 0.5, "sigma": 5.0}
    node = NodeAnswer(FR, "OK", frozenset(), Released(100, "PERTURBED", sd=5.0), privacy)
    return Answer(Released(100, "PERTURBED", sd=5.0), {FR: node}, {})


def test_whom_a_question_counts_by_sex_and_age() -> None:
    small = Where(sex="FEMALE", age_min=60, age_max=69, conditions=(Event("C49"),))
    cells, special = cover(union(Where(age_min=10, age_max=19), small))
    assert cells.sum() == 2 * 10
    assert cells[:, 10:20].all()
    assert [group for group, _ in special] == [small]
    assert special[0][1].sum() == 10  # one sex, ten years
    other, _ = cover(Where(sex="MALE", any_of=(Where(age_min=95),)))
    assert other.sum() == 6  # men of 95 to 100


def test_readings_are_trusted_while_nobody_counted_can_have_dropped_out() -> None:
    budget = Budget()
    cohort = Where(age_min=20, age_max=29)
    small = Where(sex="MALE", age_min=20, age_max=29, conditions=(Event("I40"),))
    assert budget.charge(cohort, _charged(0.2))
    assert budget.charge(union(Where(age_min=50, age_max=59), small), _charged(0.2))
    # The small set's members are in the cohort too: 0.2 + 0.2 + 0.2 passes the cap of 0.5.
    assert budget.charge(union(Where(age_min=60, age_max=69), small), _charged(0.2)) is False
    assert budget.charge(Where(age_min=70, age_max=79), _charged(0.2))
    assert budget.charge(Where(age_min=50, age_max=59), _charged(0.2))
    assert budget.charge(Where(age_min=50, age_max=59), _charged(0.2)) is False
    # Repeats cost nothing; without a ledger every reading is trusted.
    assert budget.charge(cohort, _charged(0.0))
    assert Budget().charge(cohort, _charged(None))
