"""The client's regressions: the document and variables it sends, the fit as rows and
DataFrames, a refusal as its typed error, and the fit rendered as `tessera query` prints it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schema.errors import ErrorCode
from tessera.client import Client, index
from tessera.client.errors import TesseraClientError
from tessera.report import render_regression
from tests.client.client_kit import error, gateway, graphql_reply

FIT: dict[str, Any] = {
    "family": "BINOMIAL",
    "iterations": 5,
    "converged": True,
    "dispersion": None,
    "traceId": "abc",
    "coefficients": [
        {
            "name": "(Intercept)",
            "estimate": -3.1,
            "se": 0.3,
            "noiseSd": 0.2,
            "ciLow": -3.8,
            "ciHigh": -2.4,
            "pValue": 1e-9,
        },
        {
            "name": "age",
            "estimate": 0.05,
            "se": 0.01,
            "noiseSd": 0.004,
            "ciLow": 0.03,
            "ciHigh": 0.07,
            "pValue": 1e-6,
        },
    ],
    "byJurisdiction": [
        {
            "jurisdiction": "FR",
            "n": {"value": 812, "status": "PERTURBED", "sd": 5.0, "bound": None, "reasons": []},
        },
    ],
    "reasons": [{"rule": "REGRESSION_SPARSE_LEVEL", "jurisdiction": "DK", "message": "…"}],
}
MODEL = {
    "family": "BINOMIAL",
    "outcome": {"kind": "EVENT", "event": {"domain": "DEATH"}},
    "covariates": [{"name": "age", "kind": "AGE", "lo": 18, "hi": 100}],
}
INDEX = index([{"domain": "CONDITION", "codes": [{"vocabulary": "ICD10", "code": "U07.1"}]}])


def test_a_regression_is_sent_with_its_variables_and_read_as_frames() -> None:
    transport = gateway(graphql_reply({"regression": FIT}))
    client = Client("http://gw/graphql", token="t", request="DR-1", transport=transport)
    fit = client.regression(index=INDEX, model=MODEL, max_iterations=6, age_at="REFERENCE_DATE")
    ((_, body, _),) = transport.requests
    sent = json.loads(body)
    assert "regression(" in sent["query"]
    assert sent["variables"]["request"] == "DR-1"
    assert sent["variables"]["model"] == MODEL
    assert sent["variables"]["maxIterations"] == 6
    assert sent["variables"]["ageAt"] == "REFERENCE_DATE"
    assert sent["variables"]["criteria"] == {}
    assert fit.converged
    assert fit.iterations == 5
    frame = fit.frame()
    assert list(frame["name"]) == ["(Intercept)", "age"]
    assert list(frame.columns) == [
        "name",
        "estimate",
        "se",
        "noise_sd",
        "ci_low",
        "ci_high",
        "p_value",
    ]
    assert fit.nodes_frame().to_dict("records") == [
        {"jurisdiction": "FR", "n": 812, "status": "PERTURBED", "sd": 5.0}
    ]
    assert [r["rule"] for r in fit.reasons] == ["REGRESSION_SPARSE_LEVEL"]


def test_a_refused_regression_raises_its_typed_error() -> None:
    transport = gateway(
        graphql_reply({"regression": None}, [error("NO_NODE_ANSWERED", "FR: REGRESSION_…")])
    )
    client = Client("http://gw/graphql", token="t", request="DR-1", transport=transport)
    with pytest.raises(TesseraClientError) as raised:
        client.regression(index=INDEX, model=MODEL)
    assert raised.value.code is ErrorCode.NO_NODE_ANSWERED


def test_the_fit_prints_as_a_table() -> None:
    text = render_regression("fit", FIT)
    lines = text.splitlines()
    assert lines[0] == "fit  family BINOMIAL  iterations 5  converged True"
    assert lines[1].split() == [
        "coefficient",
        "estimate",
        "se",
        "noiseSd",
        "ciLow",
        "ciHigh",
        "pValue",
    ]
    assert lines[3].split()[:2] == ["age", "0.05"]
    assert "FR: n 812 (PERTURBED, sd 5.0)" in lines
    assert "DK: REGRESSION_SPARSE_LEVEL" in lines
