"""One question, many permits, with real processes: four HDABs (FR, DE, FI, DK), each with its
own keys, trusted by its own node and by the gateway for its own jurisdiction. A question is
answered by every jurisdiction whose own HDAB's permit allows it; a wrong or missing permit
refuses exactly its own jurisdiction, with its own code; a node takes no other HDAB's permit;
and a revocation stops answers while everything runs."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.federation import load_federation
from gateway.nodes import encode_request
from policies.live import files_digest
from policies.loader import policy_files
from schema.codes import Jurisdiction
from schema.query import CohortQuery, Criteria
from schema.wire import APPROVAL_HEADER, QUERY_PATH, NodeRequest
from tessera.cli import main
from tessera.credentials import Credentials
from tessera.local import LocalFederation
from tessera.processes import free_port
from tessera.tokens import DEMO_APPLICATION
from tests.integration.federation_kit import http_post, post, start_federation
from trust.request_token import RequestSigner

pytestmark = pytest.mark.integration

FR, DE, FI, DK = Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK
FOUR = (FR, DE, FI, DK)
QUESTION = f"""{{ cohort(request: "{DEMO_APPLICATION}",
  criteria: {{ conditions: [{{ vocabulary: ICD10, code: "I10" }}] }}) {{
    queryId
    count {{ value status }}
    byJurisdiction {{ jurisdiction status error count {{ value status }}
                     reasons {{ rule jurisdiction message }} }}
}} }}"""


def ask(
    federation: LocalFederation, credentials: Credentials, url: str | None = None
) -> dict[str, dict[str, Any]]:
    status, body = post(url or federation.gateway_url, {"query": QUESTION}, credentials)
    assert status == 200
    assert "errors" not in body, body["errors"]
    cohort = body["data"]["cohort"]
    return {n["jurisdiction"]: n for n in cohort["byJurisdiction"]} | {"": cohort}


def statuses(answers: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {j: a["status"] for j, a in answers.items() if j}


def rules(answer: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in answer["reasons"]]


def test_a_cross_border_question_is_answered_with_four_permits(
    federation: LocalFederation,
) -> None:
    assert tuple(federation.members) == FOUR
    answers = ask(federation, federation.researcher())
    assert statuses(answers) == dict.fromkeys(("FR", "DE", "FI", "DK"), "OK")
    assert all(answers[j.value]["count"]["value"] > 100 for j in FOUR)


def test_the_trails_name_each_jurisdictions_permit(
    federation: LocalFederation, capsys: pytest.CaptureFixture[str]
) -> None:
    query_id = ask(federation, federation.researcher())[""]["queryId"]
    export = ["audit", "export", "--format", "json", "--db"]
    assert main([*export, str(federation.gateway_audit_db)]) == 0
    register = {row["query_id"]: row for row in json.loads(capsys.readouterr().out)}
    row = register[query_id]
    assert row["data_request"] == DEMO_APPLICATION
    assert row["organisation"] == "Demo University Hospital"
    assert sorted(row["permits"].split()) == sorted(
        f"{j.value}={DEMO_APPLICATION}-{j.value}@https://hdab.{j.value.lower()}.demo.tessera.eu"
        for j in FOUR
    )
    # Each node records the permit it verified itself, its own HDAB's.
    assert main([*export, str(federation.audit_db(DK))]) == 0
    (node_row,) = [r for r in json.loads(capsys.readouterr().out) if r["query_id"] == query_id]
    assert node_row["permits"] == f"DK={DEMO_APPLICATION}-DK@https://hdab.dk.demo.tessera.eu"
    assert node_row["data_request"] == f"{DEMO_APPLICATION}-DK"


def wrong_permit(federation: LocalFederation, case: str) -> str:
    fed = federation
    if case == "expired":
        return fed.permit(FR, now=time.time() - 7200)  # the token's own lifetime is over
    if case == "approval-expired":
        return fed.permit(FR, fed.permit_approval(FR, valid_until="2025-01-01T00:00:00Z"))
    if case == "wrong-jurisdiction":
        return fed.permit(FR, fed.permit_approval(FR, jurisdictions=[DE]))
    if case == "another-hdab":
        return fed.permit(FR, hdab=DE)  # FR's part, signed by DE's HDAB
    if case == "another-researcher":
        return fed.permit(FR, subject="someone-else@demo.tessera.eu")
    datasets = {"no-dataset": [], "uk-biobank": ["uk-biobank"]}[case]
    return fed.permit(FR, fed.permit_approval(FR, datasets=datasets))


@pytest.mark.parametrize(
    ("case", "rule"),
    [
        ("missing", "PERMIT_MISSING"),
        ("expired", "APPROVAL_EXPIRED"),
        ("approval-expired", "APPROVAL_EXPIRED"),
        ("wrong-jurisdiction", "APPROVAL_SCOPE"),
        ("another-hdab", "PERMIT_MISSING"),
        ("another-researcher", "PERMIT_INVALID"),
        ("no-dataset", "DATASET_NOT_APPROVED"),
        ("uk-biobank", "DATASET_NOT_APPROVED"),
    ],
)
def test_a_wrong_permit_refuses_exactly_its_own_jurisdiction(
    federation: LocalFederation, case: str, rule: str
) -> None:
    good = federation.permits([DE, FI, DK])
    permits = list(good.values()) + ([] if case == "missing" else [wrong_permit(federation, case)])
    answers = ask(federation, federation.credentials(permits))
    assert answers["FR"]["status"] == "DENIED"
    assert rules(answers["FR"]) == [rule]
    assert answers["FR"]["count"] is None
    assert statuses(answers) | {"FR": "OK"} == dict.fromkeys(("FR", "DE", "FI", "DK"), "OK")
    # The datasets are the node's to check (this federation file names none): FR's node
    # answered DENIED itself; every other refusal is the gateway's, FR's node never asked.
    assert answers[""]["count"]["status"] in {"EXACT", "PERTURBED", "SUPPRESSED"}


def signed_node_request(
    federation: LocalFederation, node: Jurisdiction, approval: Any
) -> tuple[bytes, list[tuple[str, str]]]:
    gateway = load_federation(federation.federation_file)
    signer = RequestSigner(
        issuer=gateway.gateway_id, kid=gateway.signing_kid, key=gateway.signing_key
    )
    body = encode_request(
        NodeRequest(
            query_id=str(uuid.uuid4()),
            request_id=approval.request_id,
            jurisdiction=node,
            query=CohortQuery(criteria=Criteria(), reference_date="2025-01-01", tables=[()]),
            approval=approval,
            subject="researcher@demo.tessera.eu",
        )
    )
    return body, [
        ("Authorization", f"Bearer {signer.sign(body, audience=federation.node_id(node))}")
    ]


def test_a_node_refuses_a_permit_of_another_hdab(federation: LocalFederation) -> None:
    # DE's HDAB approves FR's part; the request is signed by the real gateway key, so only
    # the permit is wrong: FR's node verifies permits with FR's HDAB's keys alone.
    approval = federation.permit_approval(FR)
    body, headers = signed_node_request(federation, FR, approval)
    foreign = federation.permit(FR, approval, hdab=DE)
    url = federation.node_url(FR) + QUERY_PATH
    status, _, refused = http_post(url, body, [*headers, (APPROVAL_HEADER, foreign)])
    assert (status, refused["code"]) == (403, "APPROVAL_INVALID")
    assert refused["message"] == "approval: token issuer is not trusted"
    # The same request with FR's own permit is answered.
    body, headers = signed_node_request(federation, FR, approval)
    own = federation.permit(FR, approval)
    status, _, answer = http_post(url, body, [*headers, (APPROVAL_HEADER, own)])
    assert (status, answer["status"]) == (200, "OK")


@pytest.fixture(scope="module")
def lax_gateway(federation: LocalFederation) -> Iterator[str]:
    """A second gateway, misconfigured to take DE's HDAB's permits for any jurisdiction."""
    text = federation.federation_file.read_text()
    de = 'jurisdictions = ["DE"]'
    assert de in text
    lax = federation.federation_file.with_name("lax-federation.toml")
    lax.write_text(text.replace(de, ""))
    service = federation.gateway_service(port=free_port(), name="lax gateway")
    service.args[service.args.index("--federation") + 1] = str(lax)
    federation.supervisor.add(service)
    service.start()
    try:
        asyncio.run(service.wait_ready())
        yield f"{service.base_url}/graphql"
    finally:
        service.stop()


def test_a_gateway_that_trusts_the_wrong_hdab_cannot_make_a_node_answer(
    federation: LocalFederation, lax_gateway: str
) -> None:
    permits = federation.permits([DE, FI, DK])
    # DE's HDAB approves FR as well; the lax gateway forwards that permit to FR's node.
    de_for_fr = federation.permit(DE, federation.permit_approval(DE, jurisdictions=[DE, FR]))
    answers = ask(federation, federation.credentials([*permits.values(), de_for_fr]), lax_gateway)
    assert answers["FR"]["status"] == "ERROR"
    assert answers["FR"]["error"].startswith("APPROVAL_INVALID")
    assert (answers["DE"]["status"], answers["FI"]["status"]) == ("OK", "OK")
    # The real gateway never asks FR with it: FR has no permit of its own HDAB.
    answers = ask(federation, federation.credentials([*permits.values(), de_for_fr]))
    assert rules(answers["FR"]) == ["PERMIT_MISSING"]


# -- revocation while the federation runs --------------------------------------------------------
RELOAD_S = 0.5


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    fed = start_federation(
        tmp_path_factory.mktemp("revoking"),
        FOUR,
        persons=2_000,
        env={
            "TESSERA_GATEWAY_POLICY_RELOAD_S": str(RELOAD_S),
            "TESSERA_CONNECTOR_POLICY_RELOAD_S": str(RELOAD_S),
        },
    )
    yield fed
    fed.stop()


def readyz(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/readyz", timeout=5) as response:  # noqa: S310
        body: dict[str, Any] = json.loads(response.read())
    return body


def policy_detail(federation: LocalFederation, service: str) -> dict[str, str]:
    body = readyz(federation.service(service).base_url)
    detail: dict[str, str] = body["details"]["policy"]
    return detail


def wait_for_every_service(federation: LocalFederation, check: Any) -> None:
    """Until `check(detail)` holds for every service's policy detail. The bound only keeps a
    broken reload from hanging the suite; the time it takes is not what is tested."""
    names = ["gateway", *(f"connector {j.value}" for j in federation.jurisdictions)]
    give_up = time.monotonic() + 60
    while not all(check(policy_detail(federation, name)) for name in names):
        assert time.monotonic() < give_up, {n: policy_detail(federation, n) for n in names}
        time.sleep(RELOAD_S / 5)


def revoke(policies: Path, jurisdiction: Jurisdiction, *request_ids: str) -> str:
    """Revoke permits in the policy files every service reads; the version they make."""
    path = policies / "jurisdictions" / f"{jurisdiction.value.lower()}.toml"
    text = path.read_text()
    start = text.index("[approvals.revoked]\nvalue = ") + len("[approvals.revoked]\nvalue = ")
    end = text.index("\n", start)
    listed = ", ".join(f'"{r}"' for r in request_ids)
    path.write_text(text[:start] + f"[{listed}]" + text[end:])
    return files_digest(policy_files(policies))[:16]


def test_a_revoked_permit_stops_being_answered_without_a_restart(live: LocalFederation) -> None:
    assert live.policies is not None
    researcher = live.researcher()
    assert statuses(ask(live, researcher)) == dict.fromkeys(("FR", "DE", "FI", "DK"), "OK")
    pids = {s.name: s.process.pid for s in live.supervisor.services if s.process}
    version = revoke(live.policies, DK, f"{DEMO_APPLICATION}-DK")
    wait_for_every_service(live, lambda detail: detail["version"] == version)
    answers = ask(live, researcher)
    assert rules(answers["DK"]) == ["APPROVAL_REVOKED"]
    assert statuses(answers) == {"FR": "OK", "DE": "OK", "FI": "OK", "DK": "DENIED"}
    # DK's node refuses it too, whoever asks: it reads the same revocation itself.
    approval = live.permit_approval(DK)
    body, headers = signed_node_request(live, DK, approval)
    headers.append((APPROVAL_HEADER, live.permit(DK, approval)))
    status, _, answer = http_post(live.node_url(DK) + QUERY_PATH, body, headers)
    assert (status, answer["status"]) == (200, "DENIED")
    assert rules(answer) == ["APPROVAL_REVOKED"]
    # No process was restarted.
    assert {s.name: s.process.pid for s in live.supervisor.services if s.process} == pids

    # A file that does not validate is not applied anywhere: every service stays ready on
    # the policy in force (DK's permit still revoked) and says why.
    fr = live.policies / "jurisdictions" / "fr.toml"
    good = fr.read_text()
    fr.write_text(
        good.replace("[disclosure.min_count]\nvalue = 11", "[disclosure.min_count]\nvalue = 0")
    )
    wait_for_every_service(live, lambda detail: detail["last_reload"] != "ok")
    detail = policy_detail(live, "connector FR")
    assert "jurisdictions/fr.toml:" in detail["last_reload"]
    assert "disclosure.min_count.value" in detail["last_reload"]
    assert detail["version"] == version
    assert rules(ask(live, researcher)["DK"]) == ["APPROVAL_REVOKED"]
    # Lifting the revocation (with the file repaired) applies everywhere again.
    fr.write_text(good)
    version = revoke(live.policies, DK)
    wait_for_every_service(live, lambda d: d["version"] == version and d["last_reload"] == "ok")
    assert statuses(ask(live, researcher)) == dict.fromkeys(("FR", "DE", "FI", "DK"), "OK")
