"""Survival curves end to end, through the GraphQL endpoint of a federation of real
processes: death after a first type 2 diabetes diagnosis, per year of follow-up, by sex; the
pooled curve near the truth computed from the nodes' databases (within its noise and bound),
per country and pooled, the numbers at risk never increasing, a log-rank test between the
sexes, the same numbers again for free, and each table charged once."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib
import pytest

from gateway.survival import kaplan_meier
from schema.codes import Dimension, EventDomain, Vocabulary
from schema.query import Code, CohortQuery, Criteria, EventSpec, IndexEvent, Survival
from tessera.client import Client, event, index, plot_survival, survival
from tessera.local import LocalFederation
from tests.connectors.survival_kit import followed
from tests.integration.federation_kit import JURISDICTIONS

pytestmark = pytest.mark.integration

STEP = """start end atRisk { value status sd bound } events { value status reasons { rule } }
censored { value status } survival { value status sd bound reasons { rule } }
ciLow { value } ciHigh { value }"""
SURVIVAL = (
    """{ cohort(request: "DR-2026-0042", referenceDate: "2026-01-01",
    index: { events: [{ domain: CONDITION, codes: [{ vocabulary: ICD10, code: "E11" }] }] },
    criteria: {},
    survival: { outcome: { domain: DEATH }, intervalDays: 365, maxDays: 3650, groupBy: SEX }) {
  byJurisdiction { jurisdiction status privacy { questionRho } }
  survival {
    curves { jurisdiction dimensions { name value } steps { """
    + STEP
    + """ } }
    logRank { jurisdiction dimension groups statistic { value status } degreesOfFreedom
              pValue { value } }
  }
} }"""
)


# The same question in the query model, for its truth.
QUESTION = CohortQuery(
    criteria=Criteria(),
    reference_date=dt.date(2026, 1, 1),
    index=IndexEvent(
        events=[
            EventSpec(
                domain=EventDomain.CONDITION, codes=[Code(vocabulary=Vocabulary.ICD10, code="E11")]
            )
        ]
    ),
    tables=[(Dimension.FOLLOW_UP,)],
    survival=Survival(
        outcome=EventSpec(domain=EventDomain.DEATH), interval_days=365, max_days=3650
    ),
)


def truth(federation: LocalFederation) -> list[float | None]:
    """The pooled curve of the nodes' persons, exactly."""
    persons = [p for j in JURISDICTIONS for p in followed(federation.database(j), QUESTION)]
    starts = range(0, 3650, 365)
    events = [sum(1 for _, t, e in persons if e and s <= t < s + 365) for s in starts]
    censored = [sum(1 for _, t, e in persons if not e and s <= t < s + 365) for s in starts]
    at_end = sum(1 for _, t, e in persons if not e and t >= 3650)
    return list(kaplan_meier(events, censored, at_end).survival)


def ask(graphql: Any) -> dict[str, Any]:
    body = graphql(SURVIVAL)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["cohort"]
    return result


def test_death_after_type_2_diabetes_by_sex(federation: LocalFederation, graphql: Any) -> None:
    first = ask(graphql)
    curves = first["survival"]["curves"]
    # Per country and pooled: the whole cohort and each sex (UNKNOWN included, drawn).
    pooled = [c for c in curves if c["jurisdiction"] is None]
    assert {tuple(d["value"] for d in c["dimensions"]) for c in pooled} >= {
        (),
        ("FEMALE",),
        ("MALE",),
    }
    countries = {c["jurisdiction"] for c in curves} - {None}
    assert countries == {j.value for j in JURISDICTIONS}
    whole = next(c for c in pooled if not c["dimensions"])
    steps = whole["steps"]
    assert [s["start"] for s in steps] == list(range(0, 3650, 365))
    at_risk = [s["atRisk"]["value"] for s in steps]
    assert at_risk == sorted(at_risk, reverse=True)
    survival = [s["survival"]["value"] for s in steps]
    assert all(0 <= v <= 1 for v in survival)
    assert survival == sorted(survival, reverse=True)
    assert survival[-1] < 1  # deaths happen in ten years
    # Near the truth: within six of the noise's sd, and the bound of the imputed cells.
    for step, exact in zip(steps, truth(federation), strict=True):
        assert exact is not None
        found = step["survival"]
        assert abs(found["value"] - exact) <= 6 * found["sd"] + (found["bound"] or 0) + 1e-9
    for step in steps:
        assert step["ciLow"]["value"] <= step["survival"]["value"] <= step["ciHigh"]["value"]
        assert step["survival"]["status"] == "PERTURBED"
        assert step["survival"]["sd"] > 0
        assert (
            step["events"]["value"] is None or step["events"]["value"] <= (step["atRisk"]["value"])
        )
    # A withheld exit stays withheld, and what is derived from it says so.
    low = [s for c in curves for s in c["steps"] if s["events"]["status"] == "LOW"]
    assert all(s["events"]["value"] is None for s in low)
    assert all(
        "LOW_EXITS_AT_HALF_MINIMUM" in {r["rule"] for r in s["survival"]["reasons"]}
        for c in curves
        for s in c["steps"]
        if s["survival"]["value"] is not None
        and any(x["events"]["status"] == "LOW" for x in c["steps"])
    )
    tests = first["survival"]["logRank"]
    pooled_test = next(t for t in tests if t["jurisdiction"] is None)
    assert pooled_test["dimension"] == "SEX"
    assert pooled_test["groups"] == ["FEMALE", "MALE"]
    assert pooled_test["degreesOfFreedom"] == 1
    assert 0 <= pooled_test["pValue"]["value"] <= 1
    # Three tables (the total, by FOLLOW_UP, by FOLLOW_UP and SEX), each person once in each.
    for node in first["byJurisdiction"]:
        assert node["status"] == "OK"
        assert node["privacy"]["questionRho"] == pytest.approx(0.06)
    # Asked again: the same numbers, free.
    again = ask(graphql)
    assert again["survival"] == first["survival"]
    assert {n["privacy"]["questionRho"] for n in again["byJurisdiction"]} == {0}


def test_survival_needs_an_index(graphql: Any) -> None:
    body = graphql(
        """{ cohort(request: "DR-2026-0042", criteria: {},
        survival: { outcome: { domain: DEATH }, intervalDays: 30, maxDays: 360 }) {
        survival { curves { jurisdiction } } } }"""
    )
    assert body["data"]["cohort"] is None
    assert "index" in body["errors"][0]["message"]


@pytest.mark.parametrize(("width", "top"), [(10, 360), (30, 365), (7, 3640)])
def test_intervals_are_public_widths(graphql: Any, width: int, top: int) -> None:
    body = graphql(
        """query($width: Int!, $top: Int!) { cohort(request: "DR-2026-0042",
        index: { events: [{ domain: DEATH }] }, criteria: {},
        survival: { outcome: { domain: DEATH }, intervalDays: $width, maxDays: $top }) {
        survival { curves { jurisdiction } } } }""",
        {"width": width, "top": top},
    )
    assert body["data"]["cohort"] is None
    assert body["errors"][0]["extensions"]["code"] == "INVALID_CRITERIA"


def test_the_python_client_returns_tidy_frames_and_a_plot(
    federation: LocalFederation, tmp_path: Path
) -> None:
    credentials = federation.credentials(None)
    client = Client(
        federation.gateway_url, token=credentials.bearer, permits=list(credentials.permits)
    )
    answer = client.cohort(
        index=index([event("CONDITION", ["ICD10:E11"])]),
        survival=survival(event("DEATH"), interval_days=365, max_days=3650, group_by="SEX"),
        reference_date=dt.date(2026, 1, 1),
    )
    frame = answer.survival_frame()
    assert set(frame["jurisdiction"]) == {"POOLED", *(j.value for j in JURISDICTIONS)}
    pooled = frame[(frame["jurisdiction"] == "POOLED") & frame["sex"].isna()]
    assert list(pooled["start"]) == list(range(0, 3650, 365))
    assert (pooled["ci_low"] <= pooled["survival"]).all()
    assert (pooled["survival"] <= pooled["ci_high"]).all()
    tests = answer.log_rank_frame()
    assert list(tests[tests["jurisdiction"] == "POOLED"]["groups"]) == ["FEMALE;MALE"]
    matplotlib.use("Agg")
    ax = plot_survival(frame, group="sex")
    path = tmp_path / "survival.png"
    ax.figure.savefig(path)
    assert path.stat().st_size > 0
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"FEMALE", "MALE"}


def test_tessera_query_prints_the_curve_and_the_log_rank_test(
    federation: LocalFederation, tmp_path: Path
) -> None:
    credentials = federation.credentials(None)
    token = tmp_path / "researcher.jwt"
    token.write_text(credentials.bearer or "")
    permits = []
    for i, permit in enumerate(credentials.permits):
        permits.append(tmp_path / f"permit-{i}.jwt")
        permits[-1].write_text(permit)
    command = [
        sys.executable, "-m", "tessera", "query", "--gateway", federation.gateway_url,
        "--token", str(token), "--permit", *map(str, permits), "--demo-dir", str(tmp_path),
        "--index", "ICD10:E11", "--survival", "DEATH", "--interval-days", "365",
        "--max-days", "3650", "--group-by", "SEX",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "survival, pooled: everyone" in done.stdout
    assert "survival, pooled: FEMALE" in done.stdout
    assert "log-rank by SEX (POOLED)" in done.stdout
