"""What every attack is given: the running federation with its truth, the sizes to run at,
the public minimum of each jurisdiction, and fresh applicants."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from bench.attacks.client import Applicant
from bench.attacks.federation import Simulation, daily_allowance
from schema.codes import Jurisdiction


@dataclass(frozen=True)
class Plan:
    name: str
    persons: int
    jurisdictions: tuple[Jurisdiction, ...]
    # Small sets per jurisdiction for the counting attacks (classes 1, 2, 6).
    count_targets: int
    # Averaging (class 5): small sets, decompositions of each, rewordings and repeats.
    averaged_targets: int
    decompositions: int
    rewordings: int
    repeats: int
    # Pairs per small set split across two approvals (class 6).
    approval_pairs: int
    # Tables and margins (class 3) and zero-or-small tables (class 4): the diagnoses.
    margin_codes: tuple[str, ...]
    zero_codes: tuple[str, ...]
    # Membership trials per jurisdiction (classes 7, 8, 9), half of them members.
    trials: int
    # Class 7 also rebuilds every CDM after the register update (a second restart).
    rebuild: bool


QUICK: Final = Plan(
    name="quick",
    persons=20_000,
    # Three minimums (11, 3 with cell-key noise, 5) on three nodes.
    jurisdictions=(Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.DK),
    count_targets=2,
    averaged_targets=2,
    decompositions=3,
    rewordings=2,
    repeats=1,
    approval_pairs=2,
    margin_codes=("E11",),
    zero_codes=("C49", "F84"),
    trials=8,
    rebuild=False,
)
FULL: Final = Plan(
    name="full",
    persons=100_000,
    jurisdictions=(Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK),
    count_targets=8,
    averaged_targets=4,
    decompositions=40,
    rewordings=6,
    repeats=5,
    approval_pairs=4,
    margin_codes=("E11", "I21", "F84"),
    zero_codes=("C49", "I40", "I30", "F84", "F73", "E10"),
    trials=16,
    rebuild=True,
)


def public_minimums(gateway_url: str) -> dict[Jurisdiction, int]:
    """Each member's minimum count, as the public `jurisdictions` query publishes it."""
    request = urllib.request.Request(  # noqa: S310 - the loopback gateway the simulator started
        gateway_url,
        data=json.dumps({"query": "{ jurisdictions { code minCount } }"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        body = json.loads(response.read())
    return {Jurisdiction(j["code"]): int(j["minCount"]) for j in body["data"]["jurisdictions"]}


@dataclass
class Context:
    simulation: Simulation
    plan: Plan
    seed: int = 1
    minimums: dict[Jurisdiction, int] = field(default_factory=dict)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(1))
    applicants: list[Applicant] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        if not self.minimums:
            self.minimums = public_minimums(self.simulation.federation.gateway_url)

    @property
    def jurisdictions(self) -> Sequence[Jurisdiction]:
        return self.simulation.jurisdictions

    @property
    def allowance(self) -> int:
        return daily_allowance(self.jurisdictions)

    def applicant(self, name: str, approvals: int = 1, *, affiliations: bool = False) -> Applicant:
        """A researcher of an organisation of their own (each attack starts with nothing
        spent), with `approvals` approved applications (a permit per jurisdiction each); with
        `affiliations`, each application after the first names another organisation of the
        same researcher."""
        organisation = f"Attack simulation {name}"
        applications = [f"DR-ATTACK-{name}-{i + 1}" for i in range(approvals)]
        applicant = Applicant(
            federation=self.simulation.federation,
            researcher=f"attacker-{name}@attack.example",
            organisation=organisation,
            approvals=applications,
            jurisdictions=self.jurisdictions,
            organisations={
                a: f"{organisation} (affiliation {i + 1})"
                for i, a in enumerate(applications)
                if affiliations and i > 0
            },
        )
        self.applicants.append(applicant)
        return applicant

    def close(self) -> None:
        for applicant in self.applicants:
            applicant.close()
