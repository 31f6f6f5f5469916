"""The canonical question behind a stored answer: what makes two tables the same question."""

from __future__ import annotations

import datetime as dt

from connectors.canonical import question_digest
from schema.codes import AgeAt, Dimension, MeasureKind, Vocabulary
from schema.query import AgeRange, CohortQuery, Criteria, EventCriterion

E11 = EventCriterion(vocabulary=Vocabulary.ICD10, code="E11")
I10 = EventCriterion(vocabulary=Vocabulary.ICD10, code="i10")  # normalised to I10
AGE10 = (Dimension.AGE_BAND_10,)


def query(criteria: Criteria, age_at: AgeAt | None = None) -> CohortQuery:
    return CohortQuery(criteria=criteria, reference_date=dt.date(2026, 1, 1), age_at=age_at)


def test_ages_taken_at_another_date_are_another_question() -> None:
    diabetics = Criteria(conditions=[E11])
    at_index, at_reference = query(diabetics), query(diabetics, AgeAt.REFERENCE_DATE)
    # The default is the index event, whether said or not.
    assert question_digest(at_index, AGE10) == question_digest(
        query(diabetics, AgeAt.INDEX_EVENT), AGE10
    )
    assert question_digest(at_index, AGE10) != question_digest(at_reference, AGE10)
    aged = Criteria(conditions=[E11], any_of=[Criteria(age=AgeRange(min=40))])
    assert question_digest(query(aged), ()) != question_digest(
        query(aged, AgeAt.REFERENCE_DATE), ()
    )
    # Without an age anywhere the persons counted are the same: one question.
    assert question_digest(at_index, ()) == question_digest(at_reference, ())
    assert question_digest(at_index, (Dimension.SEX,)) == question_digest(
        at_reference, (Dimension.SEX,)
    )


def test_codes_written_differently_are_one_question() -> None:
    written = Criteria(conditions=[E11, EventCriterion(vocabulary=Vocabulary.ICD10, code="I10")])
    assert question_digest(query(written), ()) == question_digest(
        query(Criteria(conditions=[I10, EventCriterion(vocabulary=Vocabulary.ICD10, code="e11")])),
        (),
    )


def test_the_index_event_is_part_of_a_question_only_where_a_dimension_reads_it() -> None:
    # What a dimension reads is found from its SQL: CALENDAR_YEAR the index event's date.
    by_year, by_sex = (Dimension.CALENDAR_YEAR,), (Dimension.SEX,)
    first, second = Criteria(conditions=[E11, I10]), Criteria(conditions=[I10, E11])
    assert question_digest(query(first), by_year) != question_digest(query(second), by_year)
    assert question_digest(query(first), by_sex) == question_digest(query(second), by_sex)


def test_a_counts_digest_is_what_it_was_before_measures_so_stored_answers_are_found() -> None:
    e11 = query(Criteria(conditions=[E11]))
    count = MeasureKind.PERSON_COUNT
    assert question_digest(e11, (), count) == (
        "341ac73102951706c64a1dad5642d5d23f0ba2028bf0321028af624ac848fa5d"
    )
    assert question_digest(e11, (Dimension.SEX,), count) == (
        "9475ce7af6f16956a381264117117774fe3b54b955bbf6a58a2c40694139eaa9"
    )


def test_a_range_is_another_question_than_its_first_code_or_another_range() -> None:
    def digest(**code: str) -> str:
        criterion = EventCriterion(vocabulary=Vocabulary.ICD10, **code)
        return question_digest(query(Criteria(conditions=[criterion])), ())

    digests = {
        digest(code="F70"),
        digest(code="F70", to="F79"),
        digest(code="F70", to="F78"),
        digest(code="F71", to="F79"),
    }
    assert len(digests) == 4
    # Written differently, the same range is the same question.
    assert digest(code="f70", to="f79") == digest(code="F70", to="F79")


def test_exclusions_and_occurrence_counts_are_other_questions() -> None:
    def digest(criterion: EventCriterion, by: tuple[Dimension, ...] = ()) -> str:
        return question_digest(query(Criteria(conditions=[criterion, I10])), by)

    shapes = [
        E11,
        E11.model_copy(update={"exclude": True}),
        E11.model_copy(update={"at_least": 2}),
        E11.model_copy(update={"at_least": 3}),
        E11.model_copy(update={"at_least": 2, "exclude": True}),
    ]
    assert len({digest(s) for s in shapes}) == len(shapes)
    # Stated at their defaults, they are the question of before.
    assert digest(EventCriterion(vocabulary=Vocabulary.ICD10, code="E11", at_least=1)) == digest(
        E11
    )
    # The index event's own count is part of a question dated by it.
    by_year = (Dimension.CALENDAR_YEAR,)
    assert digest(shapes[0], by_year) != digest(shapes[2], by_year)


def test_prior_observation_is_part_of_the_question_and_of_its_age_date() -> None:
    plain = Criteria(conditions=[E11])
    observed = Criteria(conditions=[E11], prior_observation_days=365)
    longer = Criteria(conditions=[E11], prior_observation_days=730)
    digests = {question_digest(query(c), ()) for c in (plain, observed, longer)}
    assert len(digests) == 3
    # Observed before the index event or before the reference date: other questions.
    assert question_digest(query(observed), ()) != question_digest(
        query(observed, AgeAt.REFERENCE_DATE), ()
    )
    assert question_digest(query(plain), ()) == question_digest(
        query(plain, AgeAt.REFERENCE_DATE), ()
    )


def test_death_is_part_of_the_question() -> None:
    deaths = [None, {}, {"window": {"start": "2024-01-01"}}, {"exclude": True}]
    shapes = [Criteria.model_validate({"conditions": [E11], "death": d}) for d in deaths]
    assert len({question_digest(query(c), ()) for c in shapes}) == len(shapes)


def indexed(index: dict[str, object], criteria: dict[str, object]) -> CohortQuery:
    return CohortQuery.model_validate(
        {"reference_date": dt.date(2026, 1, 1), "index": index, "criteria": criteria}
    )


def spec(*codes: str) -> dict[str, object]:
    return {"domain": "CONDITION", "codes": [{"vocabulary": "ICD10", "code": c} for c in codes]}


def test_an_index_is_part_of_every_question_that_has_one_its_unions_in_any_order() -> None:
    death = {"event": {"domain": "DEATH"}, "window": {"start_days": 0, "end_days": 28}}
    diabetes = {"event": spec("E11", "E10"), "window": {"start_days": -365, "end_days": -1}}
    first = indexed({"events": [spec("U07.1"), spec("J18")]}, {"relative": [death, diabetes]})
    # Alternatives ORed, codes of a concept set, and relative criteria ANDed: in any order.
    diabetes_again = {**diabetes, "event": spec("E10", "E11")}
    same = indexed({"events": [spec("J18"), spec("U07.1")]}, {"relative": [diabetes_again, death]})
    assert question_digest(first, ()) == question_digest(same, ())
    # Another index, or every candidate instead of the first, is another question.
    for other in (
        indexed({"events": [spec("U07.1")]}, {"relative": [death, diabetes]}),
        indexed(
            {"events": [spec("U07.1"), spec("J18")], "occurrence": "ALL"},
            {"relative": [death, diabetes]},
        ),
        indexed({"events": [spec("U07.1"), spec("J18")]}, {"relative": [death]}),
    ):
        assert question_digest(first, ()) != question_digest(other, ())
    # And a question without an index is another question again.
    assert question_digest(first, ()) != question_digest(query(Criteria()), ())


def survival_question(outcome_codes: list[str], interval_days: int) -> CohortQuery:
    return CohortQuery.model_validate(
        {
            "criteria": {},
            "reference_date": dt.date(2026, 1, 1),
            "index": {"events": [{"domain": "DEATH"}]},
            "tables": [(Dimension.FOLLOW_UP,), (Dimension.FOLLOW_UP, Dimension.SEX)],
            "survival": {
                "outcome": {
                    "domain": "CONDITION",
                    "codes": [{"vocabulary": "ICD10", "code": c} for c in outcome_codes],
                },
                "interval_days": interval_days,
                "max_days": 360,
            },
        }
    )


def test_exits_from_follow_up_name_the_outcome_and_the_intervals() -> None:
    follow = (Dimension.FOLLOW_UP,)
    monthly = survival_question(["I50", "I21"], 30)
    # The outcome's codes are a union: their order means nothing.
    assert question_digest(monthly, follow) == question_digest(
        survival_question(["I21", "I50"], 30), follow
    )
    # Another width, another outcome: another question, with noise of its own.
    assert question_digest(monthly, follow) != question_digest(
        survival_question(["I50", "I21"], 90), follow
    )
    assert question_digest(monthly, follow) != question_digest(
        survival_question(["I50"], 30), follow
    )
    # The total does not read the follow-up: the same cohort's total, one question.
    assert question_digest(monthly, ()) == question_digest(survival_question(["I50"], 90), ())
