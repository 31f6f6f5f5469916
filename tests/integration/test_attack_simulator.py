"""The attack simulator's quick run (bench/attacks): every class of attack across questions,
through the real GraphQL endpoint, against a federation of its own (three DuckDB nodes of
20,000 synthetic persons; its data refresh restarts connectors, so it shares nothing with the
session's federation). No class may pin a count below the minimum, or membership of one
person, within what the service lets one applicant ask.

`python -m bench.attacks` runs the full version (100,000 persons per node, four nodes,
`--postgres` for PostgreSQL nodes) and prints every table.
"""

from __future__ import annotations

import pytest

from bench.attacks.context import QUICK
from bench.attacks.runner import Outcome, run
from bench.attacks.verdict import MIN_TRIALS, PINNED

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Outcome, list[str]]:
    printed: list[str] = []
    outcome = run(QUICK, directory=tmp_path_factory.mktemp("attacks"), echo=printed.append)
    return outcome, printed


def test_every_class_attacks_within_one_applicants_allowance(
    simulated: tuple[Outcome, list[str]],
) -> None:
    outcome, _ = simulated
    # Class 12 restarts connectors and class 7 changes the data: they run last.
    assert [r.number for r in outcome.results] == [
        1,
        2,
        3,
        4,
        5,
        6,
        8,
        9,
        10,
        11,
        13,
        14,
        15,
        16,
        17,
        18,
        19,
        20,
        21,
        12,
        7,
    ]
    for result in outcome.results:
        assert result.targets or result.trials, result.title
        if result.kind == "membership":
            members = sum(t.member for t in result.trials)
            assert min(members, len(result.trials) - members) >= MIN_TRIALS, result.title
        assert not result.exhausted, result.title
        assert 0 < result.questions <= result.allowance * result.approvals, result.title


def test_no_class_pins_a_small_count_or_a_person(simulated: tuple[Outcome, list[str]]) -> None:
    outcome, printed = simulated
    pinned = {r.number: r.pinned_in for r in outcome.results if r.verdict == PINNED}
    assert pinned == {}, "\n".join(printed)
