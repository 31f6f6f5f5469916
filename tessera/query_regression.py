"""`tessera query --regression`: a regression's model from the command line.

    tessera query --regression LOGISTIC --index ICD10:U07.1 --y DEATH@0..28 \
        --x age=AGE:18-100 --x female=FEMALE --x t2d=ICD10:E11 --x a10=ATC:A10@-90..-1

A term is `AGE[:LO-HI]`, `FEMALE`, `DEATH`, a code `VOCAB:CODE` (an event: before the index
for a covariate, any time before it by default; after it for the outcome, 0..28 days by
default) or a LOINC code (a measurement's value per person: LAST by default, `/MEAN` or
`/FIRST` after the code; up to the index for a covariate, 0..365 days after it for the
outcome; clipped to the code's registered bounds). `@START..END` sets a term's window in days
relative to the index. The outcome is an event (0/1) for LOGISTIC, the number of events for
POISSON, and for LINEAR an age, a measurement or the number of events."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from tessera.client.errors import TesseraClientError
from tessera.client.questions import concept, event

FAMILIES: Final = {"LINEAR": "GAUSSIAN", "LOGISTIC": "BINOMIAL", "POISSON": "POISSON"}
_WINDOW: Final = re.compile(r"^(?P<term>.+?)@(?P<start>-?\d+)\.\.(?P<end>-?\d+)$")
_AGE: Final = re.compile(r"^AGE(?::(?P<lo>\d+)-(?P<hi>\d+))?$")
_DOMAINS: Final = {
    "ATC": "DRUG",
    "RXNORM": "DRUG",
    "ICD10": "CONDITION",
    "SNOMED": "CONDITION",
}


def model(family: str, outcome: str, covariates: Sequence[str]) -> dict[str, Any]:
    """The RegressionModelInput of `--regression`, `--y` and each `--x NAME=TERM`."""
    chosen = FAMILIES.get(family.strip().upper())
    if chosen is None:
        raise ValueError(f"--regression is one of {', '.join(FAMILIES)}")
    if not covariates:
        raise ValueError("a regression has at least one covariate (--x NAME=TERM)")
    terms = []
    for given in covariates:
        name, _, term = given.partition("=")
        if not name or not term:
            raise ValueError(f"--x is NAME=TERM, not {given!r}")
        terms.append({"name": name.strip(), **_term(term, outcome=False, family=chosen)})
    return {
        "family": chosen,
        "outcome": _term(outcome, outcome=True, family=chosen),
        "covariates": terms,
    }


def _term(text: str, *, outcome: bool, family: str) -> dict[str, Any]:
    what = "--y" if outcome else "--x"
    spec = text.strip()
    window = None
    matched = _WINDOW.match(spec)
    if matched:
        spec = matched["term"]
        window = {"startDays": int(matched["start"]), "endDays": int(matched["end"])}
    upper = spec.upper()
    age = _AGE.match(upper)
    if age:
        if window is not None:
            raise ValueError(f"{what} AGE takes no window")
        data: dict[str, Any] = {"kind": "AGE"}
        if age["lo"] is not None:
            data |= {"lo": int(age["lo"]), "hi": int(age["hi"])}
        return data
    if upper == "FEMALE":
        if outcome:
            raise ValueError("--y is an event, a count, an age or a measurement")
        return {"kind": "FEMALE"}
    if upper.startswith("LOINC:"):
        code, _, per_person = spec[len("LOINC:") :].partition("/")
        data = {
            "kind": "MEASUREMENT",
            "measurement": {"code": code.strip(), "perPerson": (per_person or "LAST").upper()},
        }
        default = {"startDays": 0, "endDays": 365} if outcome else None
        return data | _window(window or default)
    if upper == "DEATH":
        spec_data: dict[str, Any] = {"domain": "DEATH"}
    else:
        try:
            vocabulary = str(concept(spec)["vocabulary"]).upper()
        except TesseraClientError as exc:
            raise ValueError(f"{what} {spec!r}: {exc.message}") from None
        domain = _DOMAINS.get(vocabulary)
        if domain is None:
            raise ValueError(f"{what} {spec!r}: a code of ATC, RxNorm, ICD10, SNOMED or LOINC")
        spec_data = event(domain, [spec])
    kind = "EVENT"
    if outcome and family != "BINOMIAL":
        kind = "EVENT_COUNT"
    default = {"startDays": 0, "endDays": 28} if outcome else None
    return {"kind": kind, "event": spec_data} | _window(window or default)


def _window(window: dict[str, int] | None) -> dict[str, Any]:
    return {} if window is None else {"window": window}
