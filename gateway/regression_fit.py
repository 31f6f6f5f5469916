"""Fitting a federated GLM from the nodes' sums: Newton–Raphson (IRLS) at the gateway.

Each iteration asks every node for its cohort's information matrix H and score part v at the
current β and a public noise scale (`schema.regression`), checks what each node sent (the
model's shape, finite, symmetric, at least the noise due: a node's matrices are data, not
trusted), adds them up and takes a Newton step: β ← β + Ĥ⁻¹g, with g = v (binomial, Poisson)
or g = v − Hβ (Gaussian) and Ĥ the pooled matrix floored at its noise. The approach's steps
are cheap and noisy; once a step moves no coefficient by more than twice its noise sd (the
iterates cannot settle closer), one precise final step is taken, and the coefficients, their
se and noise sd are read from it (docs/protection.md, "Converging under noise"). The answer
is on the researcher's scale: the covariates' and a Gaussian outcome's scaling undone (a
linear map of β and its covariance).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from schema.codes import Jurisdiction, NodeStatus
from schema.errors import ErrorCode, TesseraError
from schema.regression import (
    APPROACH_NOISE_SCALE,
    FINAL_NOISE_SCALE,
    RESOLUTION,
    Family,
    RegressionModel,
    RegressionPart,
)
from schema.result import Reason, Value

DEFAULT_TOLERANCE: Final = 1e-8
DEFAULT_MAX_ITERATIONS: Final = 8
# A node's rejected part, as a reason of the fit.
REJECTED_PART: Final = "REGRESSION_PART_REJECTED"
# A node that stopped answering after the first iteration: the sums would be over another set.
NODE_DROPPED: Final = "REGRESSION_NODE_DROPPED"
# The pooled information matrix is not positive definite: the noise outweighs the cohorts.
NOISE_DOMINATES: Final = "REGRESSION_NOISE_DOMINATES"
Matrix = NDArray[np.float64]
Vector = NDArray[np.float64]


class RejectedPart(ValueError):
    """A node's part that cannot be a cohort's sums under the model."""


def check_part(part: RegressionPart, model: RegressionModel, noise_sd: float) -> None:
    """Raise `RejectedPart` unless an OK part has the model's shape, finite values, an
    exactly symmetric information matrix with a non-negative diagonal, a sum of squares
    exactly when the family needs one, and at least the noise the model's sensitivities
    call for at `noise_sd` (the jurisdiction's sd times the iteration's noise scale)."""
    p = len(model.parameters)
    h, v = part.information, part.score
    if len(h) != p or any(len(row) != p for row in h) or len(v) != p:
        raise RejectedPart(f"the sums do not have the model's {p} parameters")
    values = [x for row in h for x in row] + list(v)
    gaussian = model.family is Family.GAUSSIAN
    if gaussian:
        if part.squares is None:
            raise RejectedPart("a Gaussian part lacks its sum of squares")
        values.append(part.squares)
    elif part.squares is not None:
        raise RejectedPart("a sum of squares that the family does not use")
    if not all(math.isfinite(x) for x in values):
        raise RejectedPart("a sum is not a finite number")
    if any(h[i][j] != h[j][i] for i in range(p) for j in range(i + 1, p)):
        raise RejectedPart("the information matrix is not symmetric")
    if any(h[i][i] < -_diagonal_slack(part) for i in range(p)):
        raise RejectedPart("the information matrix has a negative diagonal")
    information, score, squares = model.sensitivities()
    needed = {
        "information": (part.sd_information, noise_sd * information * RESOLUTION),
        "score": (part.sd_score, noise_sd * score * RESOLUTION),
    }
    if gaussian:
        needed["squares"] = (part.sd_squares, noise_sd * squares * RESOLUTION)
    for name, (claimed, floor) in needed.items():
        if claimed < floor * (1 - 1e-9):
            raise RejectedPart(f"the {name} carries less noise than the policy requires")
    if part.n is None:
        raise RejectedPart("an OK part without its count")


def _diagonal_slack(part: RegressionPart) -> float:
    # Noise may take a small diagonal below zero; 8 sds below is no cohort's.
    return 8.0 * part.sd_information


@dataclass(frozen=True, slots=True)
class Totals:
    information: Matrix
    score: Vector
    squares: float
    n: int
    # The sd of the noise on each entry of the summed score part and information matrix.
    score_sd: float
    information_sd: float = 0.0


def total(parts: Sequence[RegressionPart]) -> Totals:
    """The nodes' sums added up: the union's, as if in one place, plus each node's noise."""
    information = np.sum([np.asarray(p.information, dtype=np.float64) for p in parts], axis=0)
    score = np.sum([np.asarray(p.score, dtype=np.float64) for p in parts], axis=0)
    squares = float(sum(p.squares or 0.0 for p in parts))
    n = sum((p.n.value or 0) if p.n is not None else 0 for p in parts)
    score_sd = math.sqrt(sum(p.sd_score**2 for p in parts))
    information_sd = math.sqrt(sum(p.sd_information**2 for p in parts))
    return Totals(information, score, squares, n, score_sd, information_sd)


@dataclass(frozen=True, slots=True)
class Coefficient:
    name: str
    estimate: float
    se: float
    # The sd the nodes' noise gives the estimate (first order); 0 without noise.
    noise_sd: float
    ci_low: float
    ci_high: float
    p_value: float


@dataclass(frozen=True, slots=True)
class Fit:
    family: Family
    coefficients: list[Coefficient]
    iterations: int
    converged: bool
    # Each contributing node's released count of the cohort.
    n: dict[Jurisdiction, Value]
    # The Gaussian's residual variance on the outcome's scale (None for the others).
    dispersion: float | None
    # Nodes left out (refused, failed or rejected) and why.
    reasons: list[Reason] = field(default_factory=list)


# Asks every node (None) or those named for the sums at β, at a noise scale, saying the noise
# scales of the iterations that may follow (`RegressionStep.then`).
Ask = Callable[
    [Sequence[float], Sequence[Jurisdiction] | None, float, Sequence[float]],
    Awaitable[list[RegressionPart]],
]


def _inverse(information: Matrix) -> Matrix:
    try:
        inverse: Matrix = np.linalg.inv(information).astype(np.float64)
    except np.linalg.LinAlgError:
        raise TesseraError(
            "the pooled information matrix is singular: a term is constant or a combination "
            "of others over the cohorts",
            code=ErrorCode.INVALID_CRITERIA,
        ) from None
    return inverse


def floored(information: Matrix, entry_sd: float) -> Matrix:
    """The pooled information matrix with its eigenvalues raised to at least √p times the sd
    of the noise on each entry: below that, an eigenvalue is the noise's as much as the
    cohorts' (a symmetric p × p matrix of independent noise of sd s has eigenvalues of order
    s√p). A direction the noise could have made flat or negative takes a short step instead
    of a wild or backwards one. Post-processing of what the nodes released: it costs nothing,
    and it moves no fixed point (a Newton step is zero where the score is, whatever matrix
    divides it)."""
    p = information.shape[0]
    floor = entry_sd * math.sqrt(p)
    if floor <= 0.0:
        return information
    values, vectors = np.linalg.eigh(information)
    raised: Matrix = (vectors * np.maximum(values, floor)) @ vectors.T
    return raised


def matrix_noise(entry_sd: float, spread: Matrix) -> Matrix:
    """E[E·D·E] for a symmetric matrix E whose upper-triangle entries are independent with sd
    `entry_sd` and a symmetric D: s²(tr(D)·I + D − diag(D)). With D the covariance (or outer
    product) of the vector the noisy matrix multiplies, it is the covariance that the matrix's
    noise adds to the product."""
    p = spread.shape[0]
    diagonal = np.diag(np.diag(spread))
    added: Matrix = entry_sd**2 * (np.trace(spread) * np.eye(p) + spread - diagonal)
    return added


def unscaling(model: RegressionModel) -> tuple[Matrix, Vector, float]:
    """T, shift and scale with β_raw = scale·T·β + shift: the numeric covariates' scaling to
    [−1, 1] (ages, measurements; and a Gaussian outcome's) undone."""
    p = len(model.parameters)
    transform = np.eye(p)
    for j, covariate in enumerate(model.covariates, start=1):
        span = covariate.span
        if span is not None:
            lo, hi = span
            centre, half = (lo + hi) / 2.0, (hi - lo) / 2.0
            transform[j, j] = 1.0 / half
            transform[0, j] = -centre / half
    shift = np.zeros(p)
    scale = 1.0
    if model.family is Family.GAUSSIAN:
        lo_y, hi_y = model.outcome.span
        scale = (hi_y - lo_y) / 2.0
        shift[0] = (lo_y + hi_y) / 2.0
    return transform, shift, scale


class _Dropped(Exception):
    """A node that answered before stopped answering: the fit stops."""


@dataclass
class _Asking:
    """The nodes asked so far: every one the first time, then those that contributed."""

    model: RegressionModel
    ask: Ask
    contributors: Sequence[Jurisdiction] | None = None
    n: dict[Jurisdiction, Value] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)

    async def sums(self, beta: Vector, scale: float, then: Sequence[float]) -> Totals | None:
        """The pooled sums at β; None when no node contributes (their reasons kept); raises
        `_Dropped` when a contributor stops answering."""
        parts = await self.ask(list(beta), self.contributors, scale, then)
        if self.contributors is None:
            self.reasons.extend(r for part in parts for r in _why_not(part))
            parts = [part for part in parts if part.status is NodeStatus.OK]
            self.contributors = [part.jurisdiction for part in parts]
            self.n = {part.jurisdiction: part.n for part in parts if part.n is not None}
            if not parts:
                return None
        else:
            missing = [part for part in parts if part.status is not NodeStatus.OK]
            if missing:
                self.reasons.extend(
                    Reason(
                        rule=NODE_DROPPED,
                        jurisdiction=part.jurisdiction,
                        message="the node stopped answering; the fit stops at the last "
                        "iteration every node answered",
                    )
                    for part in missing
                )
                raise _Dropped
        return total(parts)


def _noise_dominates() -> Reason:
    return Reason(
        rule=NOISE_DOMINATES,
        message="what the cohorts hold on some terms is within the noise on the pooled "
        "information matrix: their estimates carry a large noise sd and their se is "
        "understated (fewer or more common covariates, narrower bounds, a larger cohort)",
    )


async def fit(
    model: RegressionModel,
    ask: Ask,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    within_noise: bool = True,
) -> Fit:
    """Fit `model` by asking the nodes (`ask(β, jurisdictions, noise scale)`: every node the
    first time, then the ones that answered it).

    The approach: Newton steps from β = 0 on sums released at `APPROACH_NOISE_SCALE`, each
    divided by the pooled matrix `floored` at its noise, until no coefficient moves by more
    than `tolerance` of its standard error plus twice the sd the noise gives its step (the
    iterates cannot settle closer: the fit has converged), or until one iteration is left.
    Then one final step on sums released at `FINAL_NOISE_SCALE`: the coefficients, their
    standard errors and their noise are read from it. A Gaussian model needs no approach
    (its one step from any β is exact): it is the final step alone, from β = 0.

    With no node contributing, or a final matrix that is not positive definite, the fit
    has no coefficient and says why. `within_noise` False (nodes known to add no noise:
    tests comparing the fit with a direct computation) stops only on `tolerance`, floors
    nothing and asks every iteration at the standard scale."""
    p = len(model.parameters)
    beta = np.zeros(p)
    asking = _Asking(model, ask)
    approach_scale = APPROACH_NOISE_SCALE if within_noise else 1.0
    final_scale = FINAL_NOISE_SCALE if within_noise else 1.0
    converged = model.family is Family.GAUSSIAN
    iterations = 0
    # The covariance of β's noise after the approach (what the final matrix's noise multiplies).
    spread = np.zeros((p, p))
    # The last approach step's sums and matrix, for an answer without the final step.
    last: tuple[Totals, Matrix] | None = None
    try:
        while not converged and iterations < max_iterations - 1:
            # What may follow: the approach's remaining steps, then the final one.
            left = max_iterations - 2 - iterations
            summed = await asking.sums(
                beta, approach_scale, [approach_scale] * left + [final_scale]
            )
            if summed is None:
                return _unfitted(model, asking.n, asking.reasons)
            iterations += 1
            entry_sd = summed.information_sd if within_noise else 0.0
            inverse = _inverse(floored(summed.information, entry_sd))
            gradient = summed.score
            step = inverse @ gradient
            se = np.sqrt(np.clip(np.diag(inverse), 0.0, None))
            spread = summed.score_sd**2 * (inverse @ inverse)
            beta = beta + step
            last = (summed, inverse)
            settled = 2.0 * np.sqrt(np.diag(spread)) if within_noise else 0.0
            # One step from β = 0 is never a fit, however noisy the step.
            converged = iterations > 1 and bool(np.all(np.abs(step) <= tolerance * se + settled))
        final = await asking.sums(beta, final_scale, [])
    except _Dropped:
        # A node stopped answering (its reasons are the fit's): the answer is the last step
        # every node answered, at the approach's precision, not converged.
        if last is None:
            return _unfitted(model, asking.n, asking.reasons)
        summed, inverse = last
        return _answer(
            model, beta, inverse, spread, summed, iterations, False, asking.n, asking.reasons
        )
    if final is None:
        return _unfitted(model, asking.n, asking.reasons)
    iterations += 1
    entry_sd = final.information_sd if within_noise else 0.0
    lowest = float(np.linalg.eigvalsh(final.information).min())
    if lowest <= 0.0 and not within_noise:
        return _unfitted(model, asking.n, [*asking.reasons, _noise_dominates()])
    if lowest < entry_sd * math.sqrt(p):
        # Said, not hidden: some direction holds no more than the noise; the floor keeps its
        # step short and its noise sd large, but its se is then read from the floor.
        asking.reasons.append(_noise_dominates())
    inverse = _inverse(floored(final.information, entry_sd))
    beta = beta + inverse @ _gradient(model, final, beta)
    if model.family is Family.GAUSSIAN:
        # The matrix's noise multiplies the whole of β (the step from 0).
        spread = np.outer(beta, beta)
    noise = inverse @ (final.score_sd**2 * np.eye(p) + matrix_noise(entry_sd, spread)) @ inverse
    return _answer(
        model, beta, inverse, noise, final, iterations, converged, asking.n, asking.reasons
    )


def _gradient(model: RegressionModel, totals: Totals, beta: Vector) -> Vector:
    if model.family is Family.GAUSSIAN:
        gradient: Vector = totals.score - totals.information @ beta
        return gradient
    return totals.score


def _unfitted(
    model: RegressionModel, n: Mapping[Jurisdiction, Value], reasons: list[Reason]
) -> Fit:
    """No fit: no coefficient, the reasons why."""
    return Fit(
        family=model.family,
        coefficients=[],
        iterations=0,
        converged=False,
        n=dict(n),
        dispersion=None,
        reasons=reasons,
    )


def _why_not(part: RegressionPart) -> list[Reason]:
    if part.status is NodeStatus.OK:
        return []
    return [
        r
        if r.jurisdiction is not None
        else r.model_copy(update={"jurisdiction": part.jurisdiction})
        for r in part.reasons
    ] or [Reason(rule=part.status.value, jurisdiction=part.jurisdiction)]


def _answer(
    model: RegressionModel,
    beta: Vector,
    inverse: Matrix,
    noise: Matrix,
    totals: Totals,
    iterations: int,
    converged: bool,
    n: Mapping[Jurisdiction, Value],
    reasons: list[Reason],
) -> Fit:
    p = len(model.parameters)
    dispersion: float | None = None
    dispersion_scaled = 1.0
    covariance = inverse
    if model.family is Family.GAUSSIAN:
        residual = totals.squares - 2.0 * float(beta @ totals.score)
        residual += float(beta @ totals.information @ beta)
        dof = max(totals.n - p, 1)
        dispersion_scaled = max(residual, 0.0) / dof
        covariance = dispersion_scaled * inverse
    transform, shift, scale = unscaling(model)
    raw = scale * (transform @ beta) + shift
    raw_cov = scale**2 * (transform @ covariance @ transform.T)
    raw_noise = scale**2 * (transform @ noise @ transform.T)
    if model.family is Family.GAUSSIAN:
        dispersion = scale**2 * dispersion_scaled
        quantile = float(stats.t.ppf(0.975, max(totals.n - p, 1)))
    else:
        quantile = float(stats.norm.ppf(0.975))
    coefficients = []
    for j, name in enumerate(model.parameters):
        se = math.sqrt(max(float(raw_cov[j, j]), 0.0))
        noise_sd = math.sqrt(max(float(raw_noise[j, j]), 0.0))
        spread = math.hypot(se, noise_sd)
        z = float(raw[j]) / spread if spread > 0 else math.inf
        if model.family is Family.GAUSSIAN:
            p_value = float(2.0 * stats.t.sf(abs(z), max(totals.n - p, 1)))
        else:
            p_value = float(2.0 * stats.norm.sf(abs(z)))
        coefficients.append(
            Coefficient(
                name=name,
                estimate=float(raw[j]),
                se=se,
                noise_sd=noise_sd,
                ci_low=float(raw[j]) - quantile * spread,
                ci_high=float(raw[j]) + quantile * spread,
                p_value=p_value,
            )
        )
    return Fit(
        family=model.family,
        coefficients=coefficients,
        iterations=iterations,
        converged=converged,
        n=dict(n),
        dispersion=dispersion,
        reasons=reasons,
    )
