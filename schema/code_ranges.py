"""Code ranges: `ICD10 F70-F79`, `ATC A10BA-A10BX`, as a protocol writes them.

A range is the codes of one level between its two ends, inclusive: both ends well formed, of
the same length, under the same parent (for ICD-10 the same chapter letter, or the same
three-character category for subcodes; for ATC the same class above the level that varies),
and in order. Its codes are listed here, each position running through the characters it may
hold (digits, letters, or both): `ICD10 F70-F79` is F70, F71, …, F79; `ICD10 F7A-F80` is F7A,
F7B, …, F7Z, F80. So what a range means never depends on a database's collation, and a node
resolves it to concepts exactly as it would each of its codes. Only ICD-10 and ATC carry their
hierarchy in their codes; the other vocabularies have no ranges.
"""

from __future__ import annotations

import string
from functools import lru_cache
from typing import Final

from schema.codes import CODE_PATTERNS, ICD10_STEM, Vocabulary

RANGE_VOCABULARIES: Final = frozenset({Vocabulary.ICD10, Vocabulary.ATC})
# Wide enough for a whole ICD-10 block of categories (F00-F99) or an ATC level's classes.
MAX_RANGE_CODES: Final = 512

_DIGITS, _LETTERS = string.digits, string.ascii_uppercase
_ALNUM = _DIGITS + _LETTERS
# The characters each position of a code may hold (a '.' stays as it is).
_ICD10_POSITIONS: Final = (_LETTERS, _DIGITS, _ALNUM, ".", _ALNUM, _ALNUM, _ALNUM, _ALNUM)
_ATC_POSITIONS: Final = (_LETTERS, _DIGITS, _DIGITS, _LETTERS, _LETTERS, _DIGITS, _DIGITS)
# The length of each ATC level's codes: the parent of a level is the one before it.
_ATC_LEVELS: Final = (1, 3, 4, 5, 7)


class CodeRangeError(ValueError):
    """A range that is not one (its message never quotes a code: they are the researcher's)."""


@lru_cache(maxsize=1024)
def range_members(vocabulary: Vocabulary, first: str, last: str) -> tuple[str, ...]:
    """The codes from `first` to `last` inclusive (both normalised), in order; raises
    `CodeRangeError` saying what is wrong with the range."""
    if vocabulary not in RANGE_VOCABULARIES:
        raise CodeRangeError(f"{vocabulary.value} codes have no ranges (only ICD10 and ATC)")
    if not CODE_PATTERNS[vocabulary].fullmatch(last):
        raise CodeRangeError(f"the end of the range is not a well-formed {vocabulary.value} code")
    if len(first) != len(last):
        raise CodeRangeError("the ends of a range are codes of the same length")
    stem = _stem(vocabulary, first)
    if first[:stem] != last[:stem]:
        raise CodeRangeError(
            "the ends of a range share their parent: the same chapter letter for ICD-10 "
            "categories, the same category for subcodes, the same class for ATC"
        )
    if first >= last:
        raise CodeRangeError("a range starts before it ends")
    positions = _ICD10_POSITIONS if vocabulary is Vocabulary.ICD10 else _ATC_POSITIONS
    members = [first]
    while members[-1] != last:
        members.append(_next(members[-1], stem, positions))
        if len(members) > MAX_RANGE_CODES:
            raise CodeRangeError(f"a range spans at most {MAX_RANGE_CODES} codes")
    return tuple(members)


def _stem(vocabulary: Vocabulary, code: str) -> int:
    """How many leading characters the ends of a range share: all but the level that varies."""
    if vocabulary is Vocabulary.ICD10:
        return 1 if len(code) == ICD10_STEM else ICD10_STEM + 1
    return max((n for n in _ATC_LEVELS if n < len(code)), default=0)


def _next(code: str, stem: int, positions: tuple[str, ...]) -> str:
    """The code after `code` below its stem, in the alphabet of each position (an odometer);
    the ends are ordered and of one parent, so the last one is reached before it wraps."""
    chars = list(code)
    for i in range(len(chars) - 1, stem - 1, -1):
        alphabet = positions[i]
        if len(alphabet) == 1:
            continue
        k = alphabet.index(chars[i])
        if k + 1 < len(alphabet):
            chars[i] = alphabet[k + 1]
            return "".join(chars)
        chars[i] = alphabet[0]
    raise AssertionError("a range ran past its parent")  # its ends are ordered: unreachable
