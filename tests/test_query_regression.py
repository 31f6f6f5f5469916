"""`tessera query --regression`'s terms: what each becomes in the model's GraphQL input, and
what is refused, with which message (the model asked through the endpoint:
tests/integration/test_regression.py)."""

from __future__ import annotations

import pytest

from tessera.query_regression import model


def test_coronados_model_from_the_command_line() -> None:
    got = model(
        "logistic",
        "DEATH@0..28",
        ["age=AGE:18-100", "female=FEMALE", "t2d=ICD10:E11", "a10=ATC:A10@-90..-1"],
    )
    assert got["family"] == "BINOMIAL"
    assert got["outcome"] == {
        "kind": "EVENT",
        "event": {"domain": "DEATH"},
        "window": {"startDays": 0, "endDays": 28},
    }
    age, female, t2d, a10 = got["covariates"]
    assert age == {"name": "age", "kind": "AGE", "lo": 18, "hi": 100}
    assert female == {"name": "female", "kind": "FEMALE"}
    assert t2d["kind"] == "EVENT"
    assert t2d["event"]["domain"] == "CONDITION"
    assert "window" not in t2d  # any time before the index
    assert a10["event"]["domain"] == "DRUG"
    assert a10["window"] == {"startDays": -90, "endDays": -1}


def test_a_linear_model_of_measurements_from_the_command_line() -> None:
    got = model("LINEAR", "LOINC:4548-4", ["age=AGE", "bmi=LOINC:39156-5/MEAN@-365..0"])
    assert got["family"] == "GAUSSIAN"
    assert got["outcome"] == {
        "kind": "MEASUREMENT",
        "measurement": {"code": "4548-4", "perPerson": "LAST"},
        "window": {"startDays": 0, "endDays": 365},
    }
    bmi = got["covariates"][1]
    assert bmi["measurement"] == {"code": "39156-5", "perPerson": "MEAN"}
    assert bmi["window"] == {"startDays": -365, "endDays": 0}
    # A Poisson outcome counts the events.
    assert model("POISSON", "ICD10:I21@0..365", ["age=AGE"])["outcome"]["kind"] == "EVENT_COUNT"


@pytest.mark.parametrize(
    ("family", "outcome", "covariates", "message"),
    [
        ("PROBIT", "DEATH", ["age=AGE"], "--regression is one of"),
        ("LOGISTIC", "DEATH", [], "at least one covariate"),
        ("LOGISTIC", "DEATH", ["AGE"], "--x is NAME=TERM"),
        ("LOGISTIC", "FEMALE", ["age=AGE"], "--y is an event"),
        ("LOGISTIC", "DEATH", ["age=AGE@-1..0"], "AGE takes no window"),
        ("LOGISTIC", "DEATH", ["x=ICD9:250"], "unknown vocabulary"),
    ],
)
def test_a_malformed_term_is_refused(
    family: str, outcome: str, covariates: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        model(family, outcome, covariates)
