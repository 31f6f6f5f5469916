"""Secure pooling across borders with real processes: four connectors that pool, a gateway
that only ever adds masked shares. A cohort below every country's minimum is released pooled;
the same question again is the same number, free; a node killed or frozen mid-round is left
out of a second round; rounds a node does not take part in are refused at the node.

Every country's minimum is raised to 63 in this federation's policies, so that each
country's count of the rare cohort (17 to 33 persons at 20,000 persons per country) is six
sds of the noise (sd 5) below it while their sum (95) is six sds above it: the noise cannot
change the verdicts (about once in 10^8 runs)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import signal
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.federation import load_federation
from gateway.nodes import encode_request
from oversight.audit.store import ENTRIES_TABLE
from schema.codes import Dimension, EventDomain, Jurisdiction, Vocabulary
from schema.pooling import PoolingRequest, encode_nonce
from schema.query import (
    Code,
    CohortQuery,
    Criteria,
    EventCriterion,
    EventSpec,
    IndexEvent,
    Survival,
)
from schema.wire import APPROVAL_HEADER, QUERY_PATH, NodeRequest
from tessera.local import LocalFederation, policies_with_rate_limits
from tests.connectors.survival_kit import followed
from tests.integration.federation_kit import http_post, post, start_federation, true_count
from trust.request_token import RequestSigner

pytestmark = pytest.mark.integration

FR, DE, FI, DK = Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK
FOUR = (FR, DE, FI, DK)
MINIMUM = 63

# F71, moderate intellectual disability: 17 to 33 persons per country here.
RARE = """
query($sex: Sex) {
  cohort(request: "DR-2026-0042", referenceDate: "2026-01-01", deadlineMs: 30000,
         criteria: { sex: $sex, conditions: [{ vocabulary: ICD10, code: "F71" }] }) {
    count { value status sd contributors reasons { rule jurisdiction message } }
    byJurisdiction { jurisdiction status error
                     count { value status sd contributors reasons { rule } }
                     privacy { questionRho } }
    bySex: breakdown(by: [SEX]) {
      cells { dimensions { name value } count { value status sd contributors } }
    }
  }
}
"""


def policies(directory: Path) -> Path:
    """The shipped policies, rate limits lifted, every minimum raised to `MINIMUM`."""
    target = policies_with_rate_limits(directory, per_minute=100_000, per_day=1_000_000)
    for path in (target / "jurisdictions").glob("*.toml"):
        text = re.sub(
            r"(\[disclosure\.min_count\]\nvalue = )\d+", rf"\g<1>{MINIMUM}", path.read_text()
        )
        path.write_text(text)
    return target


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    directory = tmp_path_factory.mktemp("pooling")
    fed = start_federation(
        directory,
        FOUR,
        policies=policies(directory / "raised-policies"),
        # A frozen node times out well inside the deadline, leaving time for a second round.
        gateway_env={"TESSERA_GATEWAY_NODE_TIMEOUT_S": "8", "TESSERA_GATEWAY_MAX_DEADLINE_S": "60"},
    )
    yield fed
    fed.stop()


def ask(fed: LocalFederation, sex: str | None = None) -> dict[str, Any]:
    _, body = post(fed.gateway_url, {"query": RARE, "variables": {"sex": sex}}, fed.researcher())
    assert "errors" not in body, body.get("errors")
    result: dict[str, Any] = body["data"]["cohort"]
    return result


def nodes(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["jurisdiction"]: n for n in result["byJurisdiction"]}


def rules(count: dict[str, Any]) -> set[str]:
    return {r["rule"] for r in count["reasons"]}


def truth(fed: LocalFederation, *jurisdictions: Jurisdiction, sex: int | None = None) -> int:
    where = "c.vocabulary_id = 'ICD10' AND c.concept_code LIKE 'F71%'"
    if sex is not None:
        where += f" AND p.gender_concept_id = {sex}"
    return sum(true_count(fed.database(j), where) for j in jurisdictions)


def test_a_cohort_below_every_minimum_is_released_pooled(pooled: LocalFederation) -> None:
    result = ask(pooled)
    for code, node in nodes(result).items():
        assert node["status"] == "OK", node
        assert truth(pooled, Jurisdiction(code)) + 6 * 5 <= MINIMUM
        assert node["count"]["status"] == "LOW"
        assert node["count"]["contributors"] is None
        # The national total, the pooled total and the pooled table by sex: the table by
        # sex was never released on its own.
        assert node["privacy"]["questionRho"] == pytest.approx(0.06)
    count = result["count"]
    expected = truth(pooled, *FOUR)
    assert expected >= MINIMUM + 6 * 5
    assert count["status"] == "PERTURBED"
    assert count["sd"] == 5.0
    assert abs(count["value"] - expected) <= 6 * 5.0
    assert count["contributors"] == ["DK", "FI", "FR", "DE"]
    assert rules(count) == {"NOISE", "SECURE_POOL"}
    female = next(
        c["count"] for c in result["bySex"]["cells"] if c["dimensions"][0]["value"] == "FEMALE"
    )
    assert female["contributors"] == ["DK", "FI", "FR", "DE"]
    if female["value"] is not None:
        assert abs(female["value"] - truth(pooled, *FOUR, sex=8532)) <= 6 * 5.0


def test_the_same_question_again_is_the_same_number_and_free(pooled: LocalFederation) -> None:
    first = ask(pooled, "FEMALE")
    again = ask(pooled, "FEMALE")
    assert again["count"] == first["count"]
    assert again["bySex"] == first["bySex"]
    for node in nodes(again).values():
        assert node["privacy"]["questionRho"] == 0


# The pooled count only, no country's own: another reference date, so a question of its own.
POOLED_ONLY = """
query($countries: Boolean!) {
  cohort(request: "DR-2026-0042", referenceDate: "2025-01-01", deadlineMs: 30000,
         criteria: { conditions: [{ vocabulary: ICD10, code: "F71" }] }) {
    count { value status sd contributors reasons { rule } }
    byJurisdiction { jurisdiction status reasons { rule }
                     count @include(if: $countries) { value status sd }
                     privacy { sigma questionRho } }
    bySex: breakdown(by: [SEX]) { cells { count { value status } } }
  }
}
"""


def test_a_pooled_question_charges_its_total_once_unless_countries_are_asked(
    pooled: LocalFederation,
) -> None:
    def ask_pooled(countries: bool) -> dict[str, Any]:
        variables = {"countries": countries}
        _, body = post(
            pooled.gateway_url, {"query": POOLED_ONLY, "variables": variables}, pooled.researcher()
        )
        assert "errors" not in body, body.get("errors")
        result: dict[str, Any] = body["data"]["cohort"]
        return result

    first = ask_pooled(countries=False)
    assert first["count"]["status"] == "PERTURBED"
    assert rules(first["count"]) == {"NOISE", "SECURE_POOL"}
    for node in nodes(first).values():
        assert node["status"] == "OK", node
        assert "count" not in node
        assert "NOT_ASKED" in {r["rule"] for r in node["reasons"]}  # no count of its own
        # The pooled total and the pooled table by sex, each 1 / (2 sd²): the total once.
        rho = 1 / (2 * node["privacy"]["sigma"] ** 2)
        assert node["privacy"]["questionRho"] == pytest.approx(2 * rho)
    # Asking each country's count asks each node's own total: released (LOW here), charged
    # once more, and nothing else changes: the pooled numbers are the stored ones.
    second = ask_pooled(countries=True)
    for node in nodes(second).values():
        assert "NOT_ASKED" not in {r["rule"] for r in node["reasons"]}
        assert node["count"]["status"] == "LOW"
        rho = 1 / (2 * node["privacy"]["sigma"] ** 2)
        assert node["privacy"]["questionRho"] == pytest.approx(rho)
    assert second["count"] == first["count"]
    assert second["bySex"] == first["bySex"]
    # Asked again, the country's count is the stored one, free.
    third = ask_pooled(countries=True)
    assert [n["count"] for n in third["byJurisdiction"]] == [
        n["count"] for n in second["byJurisdiction"]
    ]
    assert all(n["privacy"]["questionRho"] == 0 for n in third["byJurisdiction"])


def node_request(
    fed: LocalFederation, node: Jurisdiction, pooling: PoolingRequest
) -> tuple[str, bytes, list[tuple[str, str]]]:
    """A pooled request to one node, signed with the real gateway key, with its own permit."""
    gateway = load_federation(fed.federation_file)
    signer = RequestSigner(
        issuer=gateway.gateway_id, kid=gateway.signing_kid, key=gateway.signing_key
    )
    approval = fed.permit_approval(node)
    body = encode_request(
        NodeRequest(
            query_id=str(uuid.uuid4()),
            request_id=approval.request_id,
            jurisdiction=node,
            query=CohortQuery(
                criteria=Criteria(conditions=[EventCriterion(vocabulary="ICD10", code="F71")]),
                reference_date="2026-01-01",
                tables=[()],
            ),
            approval=approval,
            subject="researcher@demo.tessera.eu",
            pooling=pooling,
        )
    )
    headers = [
        ("Authorization", f"Bearer {signer.sign(body, audience=fed.node_id(node))}"),
        (APPROVAL_HEADER, fed.permit(node, approval)),
    ]
    return fed.node_url(node) + QUERY_PATH, body, headers


def round_of(*codes: str, sigma: float = 5.0, nonce: str | None = None) -> PoolingRequest:
    return PoolingRequest(
        nonce=nonce or encode_nonce(uuid.uuid4().bytes * 2),
        round=1,
        participants=sorted(f"tessera-node-{c}" for c in codes),
        sigma=sigma,
        tables=[()],
        national=[()],
    )


@pytest.mark.parametrize(
    ("pooling", "problem"),
    [
        (round_of("de", "fi", "dk"), "do not include this node"),
        (round_of("fr", "de", "xx"), "not in this node's pooling registry"),
        (round_of("fr", "de"), "below this node's minimum of 3"),
        (round_of("fr", "de", "fi", sigma=2.5), "below this node's own 5"),
    ],
)
def test_a_node_refuses_a_round_it_does_not_take_part_in(
    pooled: LocalFederation, pooling: PoolingRequest, problem: str
) -> None:
    status, _, answer = http_post(*node_request(pooled, FR, pooling))
    assert (status, answer["code"]) == (400, "POOL_REFUSED")
    assert problem in answer["message"]


def test_a_node_takes_no_nonce_twice(pooled: LocalFederation) -> None:
    pooling = round_of("fr", "de", "fi")
    status, _, answer = http_post(*node_request(pooled, FR, pooling))
    assert (status, answer["status"]) == (200, "OK")
    shares = answer["pooled"]["tables"][0]["shares"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{11}", shares)  # one 64-bit share, masked
    status, _, answer = http_post(*node_request(pooled, FR, pooling))
    assert (status, answer["code"]) == (400, "POOL_REFUSED")
    assert "nonce was used before" in answer["message"]


def test_the_gateway_keeps_no_share(pooled: LocalFederation) -> None:
    ask(pooled, "MALE")
    # Neither its log nor its audit trail holds a node's masked shares or their field.
    log = (pooled.logs_dir / "gateway.log").read_text(errors="replace")
    assert '"shares"' not in log
    with sqlite3.connect(pooled.gateway_audit_db) as db:
        rows = [repr(r) for r in db.execute(f"SELECT * FROM {ENTRIES_TABLE}").fetchall()]  # noqa: S608
    assert rows
    assert not any("shares" in row or "pooled" in row for row in rows)


# -- dropouts (these stop and restart nodes: last in this module) ---------------------------
def test_a_node_frozen_mid_round_is_left_out_of_a_second_round(pooled: LocalFederation) -> None:
    connector = pooled.service("connector FI")
    assert connector.process is not None
    connector.process.send_signal(signal.SIGSTOP)  # it takes the request, never answers
    try:
        result = ask(pooled)  # the first question again, asked of a new participant set
    finally:
        connector.process.send_signal(signal.SIGCONT)
    assert nodes(result)["FI"]["status"] == "TIMEOUT"
    count = result["count"]
    assert count["contributors"] == ["DK", "FR", "DE"]
    assert {"SECURE_POOL", "PARTIAL"} <= rules(count)
    if count["value"] is not None:
        assert abs(count["value"] - truth(pooled, FR, DE, DK)) <= 6 * 5.0
    # The survivors paid for new shares of the new participant set, not for their national
    # total again (stored since the first question).
    for code in ("FR", "DE", "DK"):
        assert nodes(result)[code]["privacy"]["questionRho"] == pytest.approx(0.04)


def test_a_node_killed_is_left_out_of_a_second_round(pooled: LocalFederation) -> None:
    connector = pooled.service("connector DK")
    connector.kill()
    try:
        result = ask(pooled, "MALE")
    finally:
        connector.start()
        asyncio.run(connector.wait_ready())
    assert nodes(result)["DK"]["status"] in {"UNAVAILABLE", "ERROR"}
    count = result["count"]
    assert count["contributors"] == ["FI", "FR", "DE"]
    assert {"SECURE_POOL", "PARTIAL"} <= rules(count)
    if count["value"] is not None:
        assert abs(count["value"] - truth(pooled, FR, DE, FI, sex=8507)) <= 6 * 5.0


# Survival after a first F71 diagnosis: every country's exits are far below its minimum.
RARE_SURVIVAL = """
query($byCountry: Boolean!) {
  cohort(request: "DR-2026-0042", referenceDate: "2026-01-01", deadlineMs: 30000,
         index: { events: [{ domain: CONDITION, codes: [{ vocabulary: ICD10, code: "F71" }] }] },
         criteria: {},
         survival: { outcome: { domain: DEATH }, intervalDays: 365, maxDays: 365,
                     byCountry: $byCountry }) {
    byJurisdiction { jurisdiction status privacy { questionRho } }
    survival { curves { jurisdiction steps {
      atRisk { value status sd bound }
      events { value status }
      censored { value status }
      survival { value status sd bound reasons { rule } }
    } } }
  }
}
"""


def rare_followed(fed: LocalFederation) -> list[tuple[str, int, bool]]:
    question = CohortQuery(
        criteria=Criteria(),
        reference_date=dt.date(2026, 1, 1),
        index=IndexEvent(
            events=[
                EventSpec(
                    domain=EventDomain.CONDITION,
                    codes=[Code(vocabulary=Vocabulary.ICD10, code="F71")],
                )
            ]
        ),
        tables=[(Dimension.FOLLOW_UP,)],
        survival=Survival(
            outcome=EventSpec(domain=EventDomain.DEATH), interval_days=365, max_days=365
        ),
    )
    return [p for j in FOUR for p in followed(fed.database(j), question)]


def test_a_rare_cohorts_survival_is_pooled_securely_without_country_curves(
    pooled: LocalFederation,
) -> None:
    # A researcher of its own: the module's other questions spent the shared one's budget on
    # these very persons.
    credentials = pooled.credentials(subject="rare-survival@demo.tessera.eu")

    def survival_of(by_country: bool) -> dict[str, Any]:
        payload = {"query": RARE_SURVIVAL, "variables": {"byCountry": by_country}}
        _, body = post(pooled.gateway_url, payload, credentials)
        assert "errors" not in body, body.get("errors")
        result: dict[str, Any] = body["data"]["cohort"]
        return result

    persons = rare_followed(pooled)
    at_end = sum(1 for _, t, e in persons if not e and t >= 365)
    # The whole's persons still followed at a year: four sds of the noise above the minimum,
    # so their pooled cell is released but about once in 30,000 runs.
    assert at_end >= MINIMUM + 4 * 5

    # Each country's curve: every exit below the minimum, so nothing to draw, pooled or not.
    national = survival_of(True)["survival"]["curves"]
    assert {c["jurisdiction"] for c in national} == {None, *(j.value for j in FOUR)}
    for curve in national:
        assert curve["steps"][0]["survival"]["value"] is None
        assert curve["steps"][0]["atRisk"]["value"] is None

    answer = survival_of(False)
    curves = answer["survival"]["curves"]
    assert [c["jurisdiction"] for c in curves] == [None]  # no country's curve was asked
    (step,) = curves[0]["steps"]
    at_risk, survival = step["atRisk"], step["survival"]
    assert at_risk["status"] == "PERTURBED"
    # The persons at risk at the start: the exits of the year (withheld, each imputed) and
    # those still followed at its end (released): within the noise of the three cells and the
    # imputation's bound.
    assert abs(at_risk["value"] - len(persons)) <= 6 * at_risk["sd"] + at_risk["bound"]
    assert "SECURE_POOL" in {r["rule"] for r in survival["reasons"]}
    assert 0 <= survival["value"] <= 1
    for node in answer["byJurisdiction"]:
        assert node["status"] == "OK"
        assert node["privacy"]["questionRho"] > 0
    # Asked again: the stored shares, the same curve, free.
    again = survival_of(False)
    assert again["survival"] == answer["survival"]
    assert {n["privacy"]["questionRho"] for n in again["byJurisdiction"]} == {0}
