"""What each attack returns, and the verdict on it.

A count target is a small count (true value below its jurisdiction's minimum) the attacker
tries to estimate. The attack PINNED the small counts of a jurisdiction (or of all of them)
when the root-mean-square error of its estimates is under 1 person over at least 8 targets,
or when it claims a standard error under 1 for at least three of them and those estimates have
a root-mean-square error under 1 (it believes it has pinned them and is right). Otherwise they
are HELD. Estimates come from released numbers only, unbiased and unclipped: that a count is
small (or at least zero) is known before any release, and scoring guesses made with it would
find a minimum of 3 broken by itself ("1 or 2" is within a person). A target the releases say
nothing about has no estimate. Fewer than 8 targets cannot tell a pin from luck: an error with
a spread of 4 persons falls under 1 one time in five.

A membership trial asks whether one person is in a small set (has a diagnosis, is counted in
a cell). The attack PINNED membership when its balanced accuracy is above 85% over at least
8 trials about members and 8 about others, and an attacker held to what the protection allows
would do as well by chance less than once in twenty runs: protection that caps each person's
privacy spend at zCDP ρ = 0.5 (1-GDP) allows at most Φ(1/2) ≈ 69% for any test, and 14 right
of 8 + 8 (88%) happens to such an attacker in 9% of runs: over a full run's twenty-odd
membership rows, a plain 85% would cry wolf about an attacker at the bound in most runs.
(With fewer on one side, a couple of lucky guesses would decide.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Final, Literal

from bench.attacks.estimate import Reading
from schema.codes import Jurisdiction

RMSE_PINNED: Final = 1.0
MIN_TARGETS: Final = 8
SE_PINNED: Final = 1.0
ACCURACY_PINNED: Final = 0.85
# The best balanced accuracy any membership test has against 1-GDP (zCDP ρ = 0.5, the cap).
GUARANTEED: Final = NormalDist().cdf(0.5)
# How rarely an attacker at `GUARANTEED` may reach a row's accuracy for it to count as a pin.
CHANCE_PINNED: Final = 0.05
MIN_TRIALS: Final = 8  # about members, and as many about others
MIN_CLAIMED: Final = 3

PINNED: Final = "PINNED"
HELD: Final = "HELD"

RULE: Final = (
    "verdict: counts below the minimum are PINNED when the attacker's estimates have a "
    f"root-mean-square error under 1 person over at least {MIN_TARGETS} targets, or when it "
    f"claims a standard error under 1 for at least {MIN_CLAIMED} and those estimates are "
    "within it (RMSE < 1); membership is PINNED when the balanced accuracy is above "
    f"{ACCURACY_PINNED:.0%} over at least {MIN_TRIALS} trials about members and "
    f"{MIN_TRIALS} about others, and an attacker held to the cap's {GUARANTEED:.0%} would do as "
    f"well by chance less than {CHANCE_PINNED:.0%} of the time. HELD otherwise."
)


@dataclass(frozen=True, slots=True)
class CountTarget:
    jurisdiction: Jurisdiction
    label: str
    truth: int
    estimate: float | None
    se: float | None

    @classmethod
    def of(
        cls, jurisdiction: Jurisdiction, label: str, truth: int, reading: Reading | None
    ) -> CountTarget:
        if reading is None:
            return cls(jurisdiction, label, truth, None, None)
        return cls(jurisdiction, label, truth, reading.estimate, reading.se)

    @property
    def error(self) -> float | None:
        return None if self.estimate is None else self.estimate - self.truth


@dataclass(frozen=True, slots=True)
class Trial:
    jurisdiction: Jurisdiction
    label: str
    member: bool
    guess: bool


@dataclass(frozen=True, slots=True)
class CountRow:
    scope: str
    targets: int
    estimated: int
    rmse: float | None
    median_se: float | None
    claimed: int
    claimed_rmse: float | None
    verdict: str


@dataclass(frozen=True, slots=True)
class MembershipRow:
    scope: str
    members: int
    others: int
    accuracy: float | None
    # The chance that an attacker right `GUARANTEED` of the time does at least as well.
    chance: float | None
    verdict: str


def _rmse(errors: Sequence[float]) -> float | None:
    return math.sqrt(sum(e * e for e in errors) / len(errors)) if errors else None


def count_row(scope: str, targets: Sequence[CountTarget]) -> CountRow:
    estimated = [t for t in targets if t.error is not None]
    claimed = [t for t in estimated if t.se is not None and t.se < SE_PINNED]
    rmse = _rmse([t.error for t in estimated if t.error is not None])
    claimed_rmse = _rmse([t.error for t in claimed if t.error is not None])
    pinned = (len(estimated) >= MIN_TARGETS and rmse is not None and rmse < RMSE_PINNED) or (
        len(claimed) >= MIN_CLAIMED and claimed_rmse is not None and claimed_rmse < RMSE_PINNED
    )
    ses = sorted(t.se for t in estimated if t.se is not None)
    return CountRow(
        scope=scope,
        targets=len(targets),
        estimated=len(estimated),
        rmse=rmse,
        median_se=ses[len(ses) // 2] if ses else None,
        claimed=len(claimed),
        claimed_rmse=claimed_rmse,
        verdict=PINNED if pinned else HELD,
    )


def membership_row(scope: str, trials: Sequence[Trial]) -> MembershipRow:
    members = [t for t in trials if t.member]
    others = [t for t in trials if not t.member]
    accuracy = None
    if members and others:
        hit = sum(t.guess for t in members) / len(members)
        rejected = sum(not t.guess for t in others) / len(others)
        accuracy = (hit + rejected) / 2
    chance = None if accuracy is None else at_least_by_chance(len(members), len(others), accuracy)
    enough = min(len(members), len(others)) >= MIN_TRIALS
    pinned = (
        enough
        and accuracy is not None
        and chance is not None
        and accuracy > ACCURACY_PINNED
        and chance < CHANCE_PINNED
    )
    return MembershipRow(
        scope, len(members), len(others), accuracy, chance, PINNED if pinned else HELD
    )


def at_least_by_chance(
    members: int, others: int, accuracy: float, right: float = GUARANTEED
) -> float:
    """The probability that guesses each right with probability `right`, independently,
    reach a balanced accuracy of at least `accuracy` over these trials."""

    def binomial(n: int) -> list[float]:
        return [math.comb(n, k) * right**k * (1 - right) ** (n - k) for k in range(n + 1)]

    hits, rejections = binomial(members), binomial(others)
    # A hair below, so that the observed accuracy itself counts despite rounding.
    floor = accuracy - 1e-9
    return sum(
        ph * pr
        for h, ph in enumerate(hits)
        for r, pr in enumerate(rejections)
        if (h / members + r / others) / 2 >= floor
    )


@dataclass
class ClassResult:
    """One attack class's outcome."""

    number: int
    title: str
    method: str
    kind: Literal["count", "membership"]
    questions: int = 0
    approvals: int = 1
    allowance: int = 0  # questions per approval per day
    exhausted: bool = False
    targets: list[CountTarget] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    privacy: dict[str, float] = field(default_factory=dict)  # largest spend figures seen
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def scopes(self) -> list[str]:
        items = self.targets if self.kind == "count" else self.trials
        return sorted({t.jurisdiction.value for t in items})

    def count_rows(self) -> list[CountRow]:
        rows = [
            count_row(s, [t for t in self.targets if t.jurisdiction.value == s])
            for s in self.scopes()
        ]
        return [*rows, count_row("all", self.targets)]

    def membership_rows(self) -> list[MembershipRow]:
        rows = [
            membership_row(s, [t for t in self.trials if t.jurisdiction.value == s])
            for s in self.scopes()
        ]
        return [*rows, membership_row("all", self.trials)]

    @property
    def verdict(self) -> str:
        rows: Sequence[CountRow | MembershipRow] = (
            self.count_rows() if self.kind == "count" else self.membership_rows()
        )
        return PINNED if any(r.verdict == PINNED for r in rows) else HELD

    @property
    def pinned_in(self) -> list[str]:
        rows: Sequence[CountRow | MembershipRow] = (
            self.count_rows() if self.kind == "count" else self.membership_rows()
        )
        return [r.scope for r in rows if r.verdict == PINNED]
