"""A federated logistic regression end to end, through the GraphQL endpoint of the session's
federation of real processes (four nodes): the fit near the exact fit of the union of the
nodes' designs (within its stated noise), the same numbers when asked again (replayed), and
a model that would single out persons refused by every node with DataSHIELD's codes.

Asked by a researcher of its own, so that its iterations spend no other test's budget."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import statsmodels.api as sm

from connectors.backends.duckdb import DuckDBBackend
from connectors.compiler import ConceptResolver
from connectors.regression import RegressionService
from schema.query import CohortQuery
from schema.regression import RegressionModel
from tessera.credentials import Credentials
from tessera.local import LocalFederation
from tessera.report import render_regression
from tests.integration.federation_kit import post

pytestmark = pytest.mark.integration

REGRESSION = """query Fit($model: RegressionModelInput!) {
  regression(request: "DR-2026-0042", referenceDate: "2025-01-01",
    index: { events: [{ domain: CONDITION, codes: [{ vocabulary: ICD10, code: "I10" }] }],
             occurrence: FIRST },
    criteria: {}, model: $model) {
    family iterations converged
    coefficients { name estimate se noiseSd ciLow ciHigh pValue }
    byJurisdiction { jurisdiction n { value status sd } }
    reasons { rule jurisdiction }
  }
}"""
MODEL: dict[str, Any] = {
    "family": "BINOMIAL",
    "outcome": {
        "kind": "EVENT",
        "event": {"domain": "DEATH"},
        "window": {"startDays": 1, "endDays": 3650},
    },
    "covariates": [
        {"name": "age", "kind": "AGE", "lo": 20, "hi": 110},
        {"name": "female", "kind": "FEMALE"},
        {
            "name": "t2d",
            "kind": "EVENT",
            "event": {"domain": "CONDITION", "codes": [{"vocabulary": "ICD10", "code": "E11"}]},
        },
    ],
}


@pytest.fixture(scope="module")
def researcher(federation: LocalFederation) -> Credentials:
    return federation.credentials(subject="regression@test.tessera.eu")


def fit(federation: LocalFederation, auth: Credentials, model: dict[str, Any]) -> dict[str, Any]:
    status, body = post(
        federation.gateway_url,
        {"query": REGRESSION, "variables": {"model": model}},
        auth,
        timeout_s=120,
    )
    assert status == 200
    return body


def exact(federation: LocalFederation, model: RegressionModel) -> Any:
    """statsmodels on the union of the nodes' designs, read from their databases with the
    node's own design reader and no noise."""
    query = CohortQuery.model_validate(
        {
            "criteria": {},
            "reference_date": dt.date(2025, 1, 1),
            "index": {
                "events": [
                    {"domain": "CONDITION", "codes": [{"vocabulary": "ICD10", "code": "I10"}]}
                ],
                "occurrence": "FIRST",
            },
        }
    )

    class Node:
        def __init__(self, backend: DuckDBBackend) -> None:
            self.backend = backend
            self._resolver = ConceptResolver(backend.execute, dialect=backend.dialect)

    async def designs() -> list[tuple[np.ndarray, np.ndarray]]:
        found = []
        for j in federation.members:
            backend = DuckDBBackend(federation.database(j))
            try:
                reader = RegressionService(Node(backend))  # type: ignore[arg-type]
                design = await reader._design(query, model)
            finally:
                await backend.close()
            x = design.x.copy()
            x[:, 1] = np.rint(x[:, 1] * 45 + 65)  # age on 20..110
            found.append((x, design.y))
        return found

    parts = asyncio.run(designs())
    x = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return sm.GLM(y, x, family=sm.families.Binomial()).fit(tol=1e-12)


def test_a_logistic_fit_through_the_endpoint_is_near_the_exact_fit(
    federation: LocalFederation, researcher: Credentials
) -> None:
    body = fit(federation, researcher, MODEL)
    assert "errors" not in body, body
    result = body["data"]["regression"]
    assert result["family"] == "BINOMIAL"
    assert result["converged"]
    assert result["reasons"] == []
    nodes = {n["jurisdiction"]: n["n"] for n in result["byJurisdiction"]}
    assert set(nodes) == {j.value for j in federation.members}
    assert all(n["status"] == "PERTURBED" and n["sd"] == 5.0 for n in nodes.values())

    model = RegressionModel.model_validate(
        {
            "family": "BINOMIAL",
            "outcome": {
                "kind": "EVENT",
                "event": {"domain": "DEATH"},
                "window": {"start_days": 1, "end_days": 3650},
            },
            "covariates": [
                {"name": "age", "kind": "AGE", "lo": 20, "hi": 110},
                {"name": "female", "kind": "FEMALE"},
                {
                    "name": "t2d",
                    "kind": "EVENT",
                    "event": {
                        "domain": "CONDITION",
                        "codes": [{"vocabulary": "ICD10", "code": "E11"}],
                    },
                },
            ],
        }
    )
    truth = exact(federation, model)
    names = [c["name"] for c in result["coefficients"]]
    assert names == ["(Intercept)", "age", "female", "t2d"]
    for j, c in enumerate(result["coefficients"]):
        # The se is read from the pooled noisy information matrix: on age's column, which
        # every person fills, its noise is small; on a binary column of a few hundred persons
        # (t2d) it can move the se severalfold, so there only its order is checked.
        if c["name"] == "age":
            assert c["se"] == pytest.approx(truth.bse[j], rel=0.25), c
        assert truth.bse[j] / 10 < c["se"] < truth.bse[j] * 10, c
        assert c["noiseSd"] > 0
        # Within five sds of its noise (and of the Newton steps left) from the exact fit.
        assert abs(c["estimate"] - truth.params[j]) <= 5 * c["noiseSd"] + 1e-6, (c, truth.params)
        assert c["ciLow"] < c["estimate"] < c["ciHigh"]
    age = result["coefficients"][1]
    assert age["estimate"] > 0  # death grows with age
    assert age["pValue"] < 1e-3

    # The same regression again: every iteration replayed by every node, the same numbers.
    again = fit(federation, researcher, MODEL)["data"]["regression"]
    assert again["coefficients"] == result["coefficients"]


def test_a_model_that_would_single_out_persons_is_refused_by_every_node(
    federation: LocalFederation, researcher: Credentials
) -> None:
    # A one-hot of a code almost nobody has (soft-tissue sarcoma): each node refuses with its
    # rule, and nothing is released.
    model = {
        **MODEL,
        "covariates": [
            *MODEL["covariates"],
            {
                "name": "sarcoma",
                "kind": "EVENT",
                "event": {
                    "domain": "CONDITION",
                    "codes": [{"vocabulary": "ICD10", "code": "C49"}],
                },
            },
        ],
    }
    body = fit(federation, researcher, model)
    assert "errors" not in body, body
    result = body["data"]["regression"]
    assert result["coefficients"] == []
    assert result["byJurisdiction"] == []
    given = {(r["rule"], r["jurisdiction"]) for r in result["reasons"]}
    # (A column of almost nobody is also near a combination of the others: SATURATED too.)
    assert {("REGRESSION_SPARSE_LEVEL", j.value) for j in federation.members} <= given
    assert {rule for rule, _ in given} <= {"REGRESSION_SPARSE_LEVEL", "REGRESSION_SATURATED"}


def test_the_demos_coronado_regression_answers(
    federation: LocalFederation, researcher: Credentials
) -> None:
    # Example 08 as the demo sends it. At this federation's size (20,000 persons a node,
    # a fifth of the demo's) the Coronado cohort is a few hundred persons a node: every node
    # contributes or says which check refused, and where the noise outweighs what the
    # cohorts hold the answer says so (REGRESSION_NOISE_DOMINATES) rather than pretend.
    example = Path(__file__).parents[2] / "examples" / "08_regression_coronado.graphql"
    status, body = post(
        federation.gateway_url, {"query": example.read_text()}, researcher, timeout_s=120
    )
    assert status == 200
    assert "errors" not in body, body
    fit = body["data"]["deathWithin28Days"]
    contributed = {n["jurisdiction"] for n in fit["byJurisdiction"]}
    refused = {r["jurisdiction"] for r in fit["reasons"] if r["jurisdiction"]}
    assert contributed | refused == {j.value for j in federation.members}
    assert all(r["rule"].startswith("REGRESSION_") for r in fit["reasons"]), fit["reasons"]
    names = [c["name"] for c in fit["coefficients"]]
    if names:
        assert names == ["(Intercept)", "age", "female", "t2d", "a10"]
        assert fit["iterations"] >= 2 or not fit["converged"]
    else:
        assert not fit["converged"]
    print(render_regression("deathWithin28Days", fit))
