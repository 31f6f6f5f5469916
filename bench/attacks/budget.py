"""The attacker's own account of what its questions cost each person, when answers say what
they cost (`privacy { questionRho capRho }`): which of its readings are still unbiased.

A node drops a person out of a question's counts once their spend would pass the cap. Averaging
differences of counts from which different persons dropped out averages bias, not noise. The
attacker knows whom its padding counts (by sex and age), so it keeps, per sex and year of age,
what each question charged, and for each small set (defined by a diagnosis) what it charged
that set's members on top; it trusts a reading only while nobody its questions counted can
have dropped out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.attacks.client import Answer
from bench.attacks.targets import OLDEST
from bench.attacks.where import SEXES, Where

Cells = NDArray[np.bool_]  # sex × age


def _cells(sexes: Iterable[int], low: int, high: int) -> Cells:
    cells = np.zeros((len(SEXES), OLDEST + 1), dtype=bool)
    for s in sexes:
        cells[s, max(low, 0) : min(high, OLDEST) + 1] = True
    return cells


def cover(
    where: Where, sexes: frozenset[int] = frozenset({0, 1}), low: int = 0, high: int = OLDEST
) -> tuple[Cells, list[tuple[Where, Cells]]]:
    """Whom a question counts: the (sex, age) cells of its groups without a diagnosis, and
    each group with one, with the cells its members lie in."""
    if where.sex is not None:
        sexes = sexes & {SEXES.index(where.sex)}
    low = max(low, where.age_min or 0)
    high = min(high, OLDEST if where.age_max is None else where.age_max)
    if where.conditions:
        return _cells((), 0, -1), [(where, _cells(sexes, low, high))]
    if not where.any_of:
        return _cells(sexes, low, high), []
    cells = _cells((), 0, -1)
    special: list[tuple[Where, Cells]] = []
    for group in where.any_of:
        more, extra = cover(group, sexes, low, high)
        cells |= more
        special.extend(extra)
    return cells, special


def cost(answer: Answer) -> tuple[float, float] | None:
    """What the answer charged each person counted, and the cap: the largest over nodes;
    None when nodes say nothing of it (no ledger to account for)."""
    figures: list[Mapping[str, Any]] = [n.privacy for n in answer.nodes.values() if n.privacy]
    if not figures:
        return None
    return (
        max(float(f.get("questionRho") or 0.0) for f in figures),
        min(float(f.get("capRho") or np.inf) for f in figures),
    )


@dataclass
class Budget:
    spent: NDArray[np.float64] = field(default_factory=lambda: np.zeros((len(SEXES), OLDEST + 1)))
    extra: dict[Where, float] = field(default_factory=dict)

    def charge(self, where: Where, answer: Answer) -> bool:
        """Account for one answer; whether everybody it counted could still afford it."""
        charged = cost(answer)
        if charged is None:
            return True
        rho, cap = charged
        cells, special = cover(where)
        self.spent[cells] += rho
        whole = not cells.any() or float(self.spent[cells].max()) <= cap + 1e-9
        for group, members in special:
            self.extra[group] = self.extra.get(group, 0.0) + rho
            top = float(self.spent[members].max()) if members.any() else 0.0
            whole &= top + self.extra[group] <= cap + 1e-9
        return whole
