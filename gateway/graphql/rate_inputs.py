"""The `outcome` argument of `cohort`: an incidence rate's outcome and follow-up, and the
person-years its rates are given per, translated into the query model's plain data
(`schema.query.Outcome`), which does the validating."""

from __future__ import annotations

from typing import Any

import strawberry

from gateway.graphql.inputs import EventSpecInput, RelativeWindowInput, spec_data
from gateway.rates import DEFAULT_PER, PERS
from schema.errors import ErrorCode, TesseraError
from schema.query import MAX_RATE_FOLLOW_UP_DAYS

_PERS = ", ".join(f"{p:,}" for p in PERS)


@strawberry.input(
    description="An incidence rate's outcome (`rate` on the result, each country and each "
    "cell; needs `index`): each person is followed from `window.startDays` after their index "
    "date (0 or more) to the earliest of their first `event` in the window (counted), the "
    "window's last day (endDays, below "
    f"{MAX_RATE_FOLLOW_UP_DAYS}), the end of the observation period covering the index date, and "
    "their death. Each person's days at risk are at most the window's length, which sets the "
    "person-time's noise. Ages and calendar years are taken at the index date (age at entry, "
    "not split over the follow-up). Each cell then also costs its events and its days at "
    "risk, each what a count costs."
)
class OutcomeInput:
    event: EventSpecInput
    window: RelativeWindowInput
    per: int = strawberry.field(
        default=DEFAULT_PER,
        description=f"The person-years rates are given per: one of {_PERS}.",
    )


def outcome_data(outcome: OutcomeInput) -> dict[str, Any]:
    """The query model's `Outcome` as plain data (the rate's `per` is the gateway's:
    `rate_per`)."""
    return {
        "event": spec_data(outcome.event),
        "window": {"start_days": outcome.window.start_days, "end_days": outcome.window.end_days},
    }


def rate_per(outcome: OutcomeInput) -> int:
    """The person-years the rates are given per; INVALID_CRITERIA for another."""
    if outcome.per not in PERS:
        raise TesseraError(
            f"outcome.per: rates are given per {_PERS} person-years",
            code=ErrorCode.INVALID_CRITERIA,
        )
    return outcome.per
