"""The legal policy through the GraphQL endpoint: every refusal path with its stable rule id,
and the happy path for every EHDS Art. 53(1) purpose."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.nodes import MockNodeClient
from gateway.settings import GatewaySettings
from policies.loader import DEFAULT_DIRECTORY
from policies.purposes import ProhibitedUse, Purpose
from schema.approval import Approval
from schema.codes import Jurisdiction
from tests.gateway.gateway_kit import MEMBERS, REQUEST_ID, Keys, Post, mint

FR, DK, NO = Jurisdiction.FR, Jurisdiction.DK, Jurisdiction.NO
PUBLIC_BODY_ONLY = {Purpose.PUBLIC_HEALTH, Purpose.POLICY_MAKING, Purpose.OFFICIAL_STATISTICS}
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)

QUESTION = """query($by: [Dimension!]!, $j: [Jurisdiction!]) {
  cohort(request: "DR-2026-0042", jurisdictions: $j, criteria: { sex: FEMALE }) {
    count { value status reasons { rule } }
    byJurisdiction { jurisdiction status reasons { rule jurisdiction message article } }
    breakdown(by: $by) { cells { count { value } } }
  }
}"""


def token(keys: Keys, **approval: Any) -> str:
    fields: dict[str, Any] = {
        "request_id": REQUEST_ID,
        "purpose": "scientific_research",
        "jurisdictions": list(MEMBERS),
        "applicant": "A public research institute",
        "applicant_kind": "public_body",
        "valid_from": NOW - dt.timedelta(days=30),
        "valid_until": NOW + dt.timedelta(days=30),
    }
    fields.update(approval)
    return mint(keys, approval=Approval(**fields).model_dump(mode="json"))


async def ask(
    graphql: Post, auth: str, by: list[str] | None = None, jurisdictions: list[str] | None = None
) -> dict[Jurisdiction, dict[str, Any]]:
    body = await graphql(QUESTION, {"by": by or ["SEX"], "j": jurisdictions}, auth=auth)
    assert "errors" not in body, body["errors"]
    return {Jurisdiction(n["jurisdiction"]): n for n in body["data"]["cohort"]["byJurisdiction"]}


def rules(node: dict[str, Any]) -> set[str]:
    return {r["rule"] for r in node["reasons"]}


@pytest.mark.parametrize("purpose", list(Purpose))
async def test_every_art_53_purpose_is_answered_for_a_public_body(
    graphql: Post, keys: Keys, nodes: MockNodeClient, purpose: Purpose
) -> None:
    answers = await ask(graphql, token(keys, purpose=purpose.value))
    assert {n["status"] for n in answers.values()} == {"OK"}
    assert len(nodes.calls) == len(MEMBERS)


@pytest.mark.parametrize("purpose", sorted(PUBLIC_BODY_ONLY))
async def test_public_body_purposes_are_refused_to_a_private_applicant(
    graphql: Post, keys: Keys, nodes: MockNodeClient, purpose: Purpose
) -> None:
    answers = await ask(
        graphql, token(keys, purpose=purpose.value, applicant_kind="private_entity")
    )
    for node in answers.values():
        assert node["status"] == "DENIED"
        assert rules(node) == {"PURPOSE_PUBLIC_BODY_ONLY"}
        assert "53(2)" in node["reasons"][0]["article"]
    assert nodes.calls == []  # nothing left the gateway


async def test_research_is_open_to_a_private_applicant(graphql: Post, keys: Keys) -> None:
    answers = await ask(graphql, token(keys, applicant_kind="private_entity"))
    assert {n["status"] for n in answers.values()} == {"OK"}


@pytest.mark.parametrize("use", list(ProhibitedUse))
async def test_art_54_uses_are_refused_whatever_the_token_claims(
    graphql: Post, keys: Keys, nodes: MockNodeClient, use: ProhibitedUse
) -> None:
    answers = await ask(graphql, token(keys, purpose=use.value))
    for node in answers.values():
        assert node["status"] == "DENIED"
        assert rules(node) == {"PURPOSE_PROHIBITED"}
        assert "Art. 54" in node["reasons"][0]["article"]
    assert nodes.calls == []


@pytest.mark.parametrize(
    ("approval", "rule"),
    [
        ({"purpose": "world_domination"}, "PURPOSE_UNKNOWN"),
        ({"valid_until": NOW - dt.timedelta(days=1)}, "APPROVAL_EXPIRED"),
        ({"valid_from": NOW + dt.timedelta(days=1)}, "APPROVAL_NOT_YET_VALID"),
    ],
    ids=["unknown-purpose", "expired", "not-yet-valid"],
)
async def test_an_unusable_approval_is_refused_with_its_reason(
    graphql: Post, keys: Keys, approval: dict[str, Any], rule: str
) -> None:
    answers = await ask(graphql, token(keys, **approval))
    assert {n["status"] for n in answers.values()} == {"DENIED"}
    assert all(rule in rules(n) for n in answers.values())


async def test_a_jurisdiction_outside_the_approval_is_denied_and_the_others_answer(
    graphql: Post, keys: Keys, nodes: MockNodeClient
) -> None:
    answers = await ask(graphql, token(keys, jurisdictions=["FR", "DK"]), jurisdictions=None)
    assert answers[NO]["status"] == "DENIED"
    assert rules(answers[NO]) == {"APPROVAL_SCOPE"}
    assert answers[FR]["status"] == answers[DK]["status"] == "OK"
    assert {c.node.jurisdiction for c in nodes.calls} == {FR, DK}


# -- rules that differ per jurisdiction: a policy directory with local changes --------------
@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(DEFAULT_DIRECTORY, target)

    def edit(code: str, old: str, new: str) -> None:
        path = target / "jurisdictions" / f"{code}.toml"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))

    edit("fr", "[approvals.revoked]\nvalue = []", f'[approvals.revoked]\nvalue = ["{REQUEST_ID}"]')
    edit(
        "dk",
        "[dimensions.min_age_band_width]\nvalue = 5",
        "[dimensions.min_age_band_width]\nvalue = 10",
    )
    edit(
        "no",
        "# Dimensions: the baseline's list applies",
        '[dimensions.not_allowed]\nvalue = ["CALENDAR_YEAR"]\nsource = "NO restriction"\n\n'
        "# Dimensions: the baseline's list applies",
    )
    edit("dk", '    "education",\n', "")
    edit("no", "[dimensions.max_cells]\nvalue = 10000", "[dimensions.max_cells]\nvalue = 20")
    # FR loses its file: a member without a policy is refused, never answered by default.
    (target / "jurisdictions" / "fr.toml").unlink()
    return target


@pytest.fixture
async def local_client(
    federation_file: Path, policy_dir: Path, nodes: MockNodeClient
) -> AsyncIterator[TestClient]:
    settings = GatewaySettings.from_env({}, federation=federation_file, policies=policy_dir)
    async with TestClient(TestServer(create_app(settings, node_client=nodes))) as client:
        yield client


async def test_national_rules_refuse_per_jurisdiction(local_client: TestClient, keys: Keys) -> None:
    async def answers(by: list[str], **approval: Any) -> dict[Jurisdiction, dict[str, Any]]:
        response = await local_client.post(
            "/graphql",
            json={"query": QUESTION, "variables": {"by": by}},
            headers={"Authorization": f"Bearer {token(keys, **approval)}"},
        )
        body = await response.json()
        return {
            Jurisdiction(n["jurisdiction"]): n for n in body["data"]["cohort"]["byJurisdiction"]
        }

    fine = await answers(["SEX", "AGE_BAND_5"])
    assert rules(fine[FR]) == {"NO_POLICY"}
    assert rules(fine[DK]) == {"GRANULARITY"}
    # 3 sexes × 27 five-year bands is more cells than NO's (edited) 20.
    assert rules(fine[NO]) == {"TABLE_TOO_LARGE"}
    by_year = await answers(["CALENDAR_YEAR"])
    assert "DIMENSION_NOT_ALLOWED" in rules(by_year[NO])
    assert by_year[DK]["status"] == "OK"
    by_sex = await answers(["SEX"], purpose="education")
    assert rules(by_sex[DK]) == {"PURPOSE_NOT_ALLOWED"}
    assert by_sex[NO]["status"] == "OK"


async def test_policies_are_published_with_their_sources(graphql: Post) -> None:
    body = await graphql(
        "{ policies { jurisdiction healthDataAccessBody layers "
        "rules { rule value source verified } } }",
        auth=None,
    )
    published = {p["jurisdiction"]: p for p in body["data"]["policies"]}
    assert set(published) == {j.value for j in MEMBERS}
    fr = {r["rule"]: r for r in published["FR"]["rules"]}
    assert fr["disclosure.min_count"]["value"] == "11"
    assert "Health Data Hub" in fr["disclosure.min_count"]["source"]
    assert all(r["source"] for p in published.values() for r in p["rules"])
