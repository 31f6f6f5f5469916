"""Survival follow-up in public intervals: the arithmetic every party shares.

A survival question (`schema.query.Survival`) follows each cohort person from their index
date to the first outcome event on or after it, censored at the end of the observation period
holding the index date, for at most `max_days`, in intervals of `interval_days` (a width from
`INTERVAL_DAYS`: public, never chosen from the data). Each person leaves follow-up exactly once:
by an event or a censoring in one interval, or still at risk at `max_days`. So the node counts
each person in exactly one cell of a table by FOLLOW_UP, keyed by where they left it:

    "<start>:EVENT"      the outcome in the interval starting <start> days after the index
    "<start>:CENSORED"   observation ended in that interval before any outcome
    "<max>:AT_RISK"      followed to the maximum without either

The number at risk at an interval's start is every person who left in it or later: a sum of
cells, never a count of its own (`gateway.survival`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

# The widths a question may choose, in days: a week, a month, a quarter, a year.
INTERVAL_DAYS: Final = (7, 30, 90, 365)
# The longest follow-up a question may ask, and its most intervals (cells: twice that, + 1).
MAX_FOLLOW_UP_DAYS: Final = 3650
MAX_INTERVALS: Final = 60


class Exit(StrEnum):
    """How a person leaves follow-up: the part of a FOLLOW_UP key after the colon."""

    EVENT = "EVENT"
    CENSORED = "CENSORED"
    AT_RISK = "AT_RISK"


def exit_key(start: int, exit_: Exit) -> str:
    """The FOLLOW_UP cell key of persons leaving by `exit_` in the interval starting at
    `start` days (for AT_RISK: still at risk at `start`, the maximum)."""
    return f"{start}:{exit_.value}"


def parse_key(key: str) -> tuple[int, Exit]:
    """A FOLLOW_UP cell key's day and exit (`exit_key` reversed)."""
    day, _, exit_ = key.partition(":")
    return int(day), Exit(exit_)


def interval_starts(interval_days: int, max_days: int) -> tuple[int, ...]:
    """The intervals' first days, from the index date (day 0)."""
    return tuple(range(0, max_days, interval_days))


def follow_up_domain(interval_days: int, max_days: int) -> tuple[str, ...]:
    """Every cell of a table by FOLLOW_UP, in follow-up order."""
    cells = [
        exit_key(start, exit_)
        for start in interval_starts(interval_days, max_days)
        for exit_ in (Exit.EVENT, Exit.CENSORED)
    ]
    return (*cells, exit_key(max_days, Exit.AT_RISK))


def all_keys() -> frozenset[str]:
    """Every FOLLOW_UP key a node may send, over every width and maximum allowed."""
    keys: set[str] = set()
    for width in INTERVAL_DAYS:
        top = min(MAX_FOLLOW_UP_DAYS, width * MAX_INTERVALS)
        keys.update(follow_up_domain(width, top - top % width))
        keys.update(exit_key(end, Exit.AT_RISK) for end in range(width, top + 1, width))
    return frozenset(keys)
