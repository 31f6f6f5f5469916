"""Code ranges (`schema.code_ranges`): which ranges there are, and the codes each one names."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schema.code_ranges import MAX_RANGE_CODES, CodeRangeError, range_members
from schema.codes import CODE_PATTERNS, Vocabulary
from schema.query import Code, EventCriterion

ICD10, ATC = Vocabulary.ICD10, Vocabulary.ATC


def test_a_range_names_every_code_between_its_ends() -> None:
    assert range_members(ICD10, "F70", "F79") == tuple(f"F7{d}" for d in range(10))
    assert range_members(ICD10, "F7A", "F80")[-3:] == ("F7Y", "F7Z", "F80")
    assert range_members(ICD10, "E11.0", "E11.3") == ("E11.0", "E11.1", "E11.2", "E11.3")
    assert range_members(ATC, "A10BA", "A10BD") == ("A10BA", "A10BB", "A10BC", "A10BD")
    assert range_members(ATC, "A", "C") == ("A", "B", "C")
    assert range_members(ATC, "A10BA08", "A10BA11") == ("A10BA08", "A10BA09", "A10BA10", "A10BA11")


def test_a_code_with_an_end_is_normalised_like_the_code() -> None:
    code = EventCriterion(vocabulary=ICD10, code=" e11.0", to="e119 ")
    assert (code.code, code.to) == ("E11.0", "E11.9")
    # Without an end, a code's dump is what it was before ranges (stored answers' digests).
    assert "to" not in Code(vocabulary=ICD10, code="E11").model_dump()


@pytest.mark.parametrize(
    ("vocabulary", "first", "last", "problem"),
    [
        (Vocabulary.SNOMED, "44054006", "44054007", "SNOMED codes have no ranges"),
        (Vocabulary.LOINC, "4548-4", "4549-2", "LOINC codes have no ranges"),
        (ICD10, "F70", "F7", "not a well-formed ICD10 code"),
        (ICD10, "F70", "F79.1", "of the same length"),
        (ICD10, "E70", "F79", "share their parent"),
        (ICD10, "E11.0", "E12.9", "share their parent"),
        (ATC, "A10BA", "A10CA", "share their parent"),
        (ATC, "A10", "A10BA", "of the same length"),
        (ICD10, "F79", "F70", "starts before it ends"),
        (ICD10, "F70", "F70", "starts before it ends"),
        (ICD10, "E11.0000", "E11.ZZZZ", f"at most {MAX_RANGE_CODES} codes"),
    ],
)
def test_what_is_not_a_range_is_refused_saying_why_without_quoting_it(
    vocabulary: Vocabulary, first: str, last: str, problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem) as caught:
        EventCriterion(vocabulary=vocabulary, code=first, to=last)
    messages = " ".join(e["msg"] for e in caught.value.errors(include_input=False))
    assert first not in messages
    assert last not in messages


ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Parents and how many characters below them vary, small enough to list every code.
STEMS = {
    ICD10: [("F", 2), ("E11.", 1), ("E11.", 2)],
    ATC: [("", 1), ("A", 2), ("A10", 1), ("A10BA", 2)],
}


@st.composite
def ranges(draw: st.DrawFn) -> tuple[Vocabulary, str, str, int]:
    """Two well-formed codes of one level under one parent, ordered."""
    vocabulary = draw(st.sampled_from([ICD10, ATC]))
    stem, width = draw(st.sampled_from(STEMS[vocabulary]))
    tail = st.text(ALNUM, min_size=width, max_size=width)
    a, b = stem + draw(tail), stem + draw(tail)
    pattern = CODE_PATTERNS[vocabulary]
    assume(a != b and pattern.fullmatch(a) and pattern.fullmatch(b))
    return vocabulary, min(a, b), max(a, b), len(stem)


@settings(max_examples=300, deadline=None)
@given(ranges())
def test_a_range_is_every_well_formed_code_of_its_shape_between_its_ends(
    case: tuple[Vocabulary, str, str, int],
) -> None:
    vocabulary, first, last, stem = case
    # Listed independently: every string of the length under the parent, kept if well formed
    # and between the ends.
    expected = [
        code
        for tail in itertools.product(ALNUM, repeat=len(first) - stem)
        for code in [first[:stem] + "".join(tail)]
        if CODE_PATTERNS[vocabulary].fullmatch(code) and first <= code <= last
    ]
    if len(expected) > MAX_RANGE_CODES:
        with pytest.raises(CodeRangeError, match="at most"):
            range_members(vocabulary, first, last)
    else:
        assert list(range_members(vocabulary, first, last)) == expected
