"""Federated regressions from Python: the `regression` query's document, and its answer as
rows and DataFrames (one row per coefficient; one per contributing country)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from tessera.client.frames import pandas

REGRESSION_DOCUMENT: Final = """query Regression($request: String!, $index: IndexEventInput!,
    $criteria: CriteriaInput!, $model: RegressionModelInput!, $jurisdictions: [Jurisdiction!],
    $referenceDate: Date, $ageAt: AgeAt, $noise: NoiseLevel, $maxIterations: Int) {
  regression(request: $request, index: $index, criteria: $criteria, model: $model,
      jurisdictions: $jurisdictions, referenceDate: $referenceDate, ageAt: $ageAt,
      noise: $noise, maxIterations: $maxIterations) {
    family iterations converged dispersion traceId
    coefficients { name estimate se noiseSd ciLow ciHigh pValue }
    byJurisdiction { jurisdiction n { value status sd bound reasons { rule } } }
    reasons { rule jurisdiction message }
  }
}"""

COEFFICIENT_COLUMNS: Final = (
    "name",
    "estimate",
    "se",
    "noise_sd",
    "ci_low",
    "ci_high",
    "p_value",
)


def regression_variables(
    *,
    request: str,
    index: Mapping[str, Any],
    model: Mapping[str, Any],
    criteria: Mapping[str, Any] | None,
    jurisdictions: Sequence[str] | None,
    reference_date: dt.date | None,
    age_at: str | None,
    noise: str | None,
    max_iterations: int | None,
) -> dict[str, Any]:
    """The query's variables; `index`, `model` and `criteria` as their GraphQL inputs
    (camelCase keys, enum values as strings)."""
    variables: dict[str, Any] = {
        "request": request,
        "index": dict(index),
        "criteria": dict(criteria or {}),
        "model": dict(model),
    }
    optional = {
        "jurisdictions": None if jurisdictions is None else [str(j) for j in jurisdictions],
        "referenceDate": None if reference_date is None else reference_date.isoformat(),
        "ageAt": age_at,
        "noise": noise,
        "maxIterations": max_iterations,
    }
    variables.update({k: v for k, v in optional.items() if v is not None})
    return variables


@dataclass(frozen=True, slots=True)
class RegressionAnswer:
    """A fitted regression as the gateway released it (`data`: the `regression` field)."""

    data: Mapping[str, Any]

    @property
    def converged(self) -> bool:
        return bool(self.data["converged"])

    @property
    def iterations(self) -> int:
        return int(self.data["iterations"])

    @property
    def reasons(self) -> list[Mapping[str, Any]]:
        """Why a country did not contribute (its refusal's rule, e.g. REGRESSION_SPARSE_LEVEL)."""
        return list(self.data.get("reasons") or [])

    def rows(self) -> list[dict[str, Any]]:
        """One row per coefficient: estimate, standard error, the noise's sd, the 95% interval
        and the p-value (both counting the noise)."""
        return [
            {
                "name": c["name"],
                "estimate": c["estimate"],
                "se": c["se"],
                "noise_sd": c["noiseSd"],
                "ci_low": c["ciLow"],
                "ci_high": c["ciHigh"],
                "p_value": c["pValue"],
            }
            for c in self.data["coefficients"]
        ]

    def node_rows(self) -> list[dict[str, Any]]:
        """One row per contributing country: its released count of the cohort."""
        return [
            {
                "jurisdiction": node["jurisdiction"],
                "n": node["n"]["value"],
                "status": node["n"]["status"],
                "sd": node["n"]["sd"],
            }
            for node in self.data["byJurisdiction"]
        ]

    def frame(self) -> Any:
        pd = pandas()
        return pd.DataFrame(self.rows(), columns=list(COEFFICIENT_COLUMNS))

    def nodes_frame(self) -> Any:
        pd = pandas()
        return pd.DataFrame(self.node_rows(), columns=["jurisdiction", "n", "status", "sd"])
