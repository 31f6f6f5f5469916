"""Permits, one per jurisdiction: reading the headers, verifying what was presented, choosing
each jurisdiction's permit and deciding it on that permit alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.access import decide_access
from gateway.auth import Authenticator, Principal
from gateway.permits import PermitVerifier, Presented, candidates, permit_tokens
from policies.loader import load_policy_set
from policies.reasons import RuleId
from schema.codes import Jurisdiction
from schema.errors import ErrorCode, TesseraError
from schema.wire import MAX_PERMITS
from tests.gateway.gateway_kit import (
    GATEWAY_ID,
    HDAB_KEYS,
    IDENTITY,
    IDENTITY_KEY,
    ISSUER,
    MEMBERS,
    POLICIES,
    REQUEST_ID,
    hdab,
    identity_token,
    make_plan,
    permit,
    revoking,
)
from trust.keys import KeySet, TrustedKey
from trust.keysource import StaticKeys
from trust.tokens import MAX_TOKEN_BYTES, TokenVerifier, TrustedIssuer

FR, DK, NO = Jurisdiction.FR, Jurisdiction.DK, Jurisdiction.NO
SHARED_KEY = Ed25519PrivateKey.generate()


def trusted(iss: str, key: Ed25519PrivateKey) -> TrustedIssuer:
    public = TrustedKey(kid=None, key=key.public_key(), algorithms=frozenset({"EdDSA"}))
    return TrustedIssuer(iss=iss, keys=StaticKeys(KeySet((public,))), algorithms=("EdDSA",))


ISSUERS = [
    trusted(IDENTITY, IDENTITY_KEY),
    trusted(ISSUER, SHARED_KEY),  # a shared issuer, trusted for every jurisdiction
    *(trusted(hdab(j), key) for j, key in HDAB_KEYS.items()),
]
# Whose permits decide what: each HDAB its own jurisdiction, the identity issuer nothing.
DECIDES = {IDENTITY: frozenset[Jurisdiction](), **{hdab(j): frozenset({j}) for j in MEMBERS}}


def allowed(iss: str, jurisdiction: Jurisdiction) -> bool:
    return (iss in DECIDES and jurisdiction in DECIDES[iss]) or iss == ISSUER


VERIFIER = PermitVerifier(TokenVerifier(audience=GATEWAY_ID, issuers=ISSUERS))
AUTHENTICATE = Authenticator(audience=GATEWAY_ID, issuers={i.iss: i for i in ISSUERS})


def researcher(token: str | None = None) -> Principal:
    return AUTHENTICATE.authenticate(f"Bearer {token or identity_token()}")


def present(*permits: str, bearer: str | None = None) -> Presented:
    return VERIFIER.present(researcher(bearer), permit_tokens(permits))


def refusal(presented: Presented, jurisdiction: Jurisdiction, request: str = REQUEST_ID) -> Any:
    found = candidates(presented, jurisdiction, request, allowed)
    assert not found.permits
    return [(r.rule, r.message) for r in found.reasons]


# -- the header ---------------------------------------------------------------------------------
def test_permits_come_one_per_line_or_comma_separated() -> None:
    fr, dk, no = permit(FR), permit(DK), permit(NO)
    assert permit_tokens([fr, f"{dk} , {no}", " ", ""]) == [fr, dk, no]
    assert permit_tokens([]) == []


def test_too_many_permits_are_refused_whole() -> None:
    token = permit(FR)
    assert len(permit_tokens([token] * MAX_PERMITS)) == MAX_PERMITS
    with pytest.raises(TesseraError) as caught:
        permit_tokens([token] * (MAX_PERMITS + 1))
    assert caught.value.code is ErrorCode.TOO_MANY_PERMITS
    with pytest.raises(TesseraError):
        permit_tokens([", ".join([token] * (MAX_PERMITS + 1))])


@pytest.mark.parametrize(
    "value",
    ["not-a-jwt", "a.b", "a.b.c.d", "é.é.é", "a.b.c<script>", "x" * 10 + "." * 2 + "\x00"],
)
def test_a_malformed_permit_fails_the_request_without_its_value(value: str) -> None:
    with pytest.raises(TesseraError) as caught:
        permit_tokens([value])
    assert caught.value.code is ErrorCode.TOKEN_MALFORMED
    assert "X-Tessera-Permit" in caught.value.message
    assert value not in caught.value.message


def test_an_oversized_permit_fails_the_request() -> None:
    huge = "a" * MAX_TOKEN_BYTES + ".b.c"
    with pytest.raises(TesseraError) as caught:
        permit_tokens([huge])
    assert (caught.value.code, caught.value.message) == (
        ErrorCode.TOKEN_MALFORMED,
        "a permit (X-Tessera-Permit) is too large",
    )


# -- what was presented -------------------------------------------------------------------------
def test_each_good_permit_counts_once() -> None:
    fr, dk = permit(FR), permit(DK)
    presented = present(fr, dk, fr)
    assert [(p.issuer, p.approval.request_id) for p in presented.permits] == [
        (hdab(FR), "DR-FR"),
        (hdab(DK), "DR-DK"),
    ]
    assert presented.unusable == ()
    assert presented.names(REQUEST_ID)  # their application
    assert presented.names("DR-DK")
    assert not presented.names("DR-2099-0001")


def test_a_bearer_token_with_an_approval_is_a_permit_too() -> None:
    fr = permit(FR)
    presented = present(fr, bearer=fr)
    assert len(presented.permits) == 1
    # An identity token is not one, even sent as a permit.
    assert present(identity_token()).permits == ()
    assert not present()


def test_a_permit_from_an_issuer_nobody_trusts_fails_the_request() -> None:
    stranger = permit(FR, key=Ed25519PrivateKey.generate(), iss="https://hdab.nowhere.test")
    with pytest.raises(TesseraError) as caught:
        present(permit(DK), stranger)
    assert (caught.value.code, caught.value.message) == (
        ErrorCode.TOKEN_UNTRUSTED_ISSUER,
        "a permit (X-Tessera-Permit): token issuer is not trusted",
    )


def test_a_permit_whose_issuer_cannot_be_read_fails_the_request() -> None:
    with pytest.raises(TesseraError) as caught:
        present("eyJhbGciOiJFZERTQSJ9.bm90IGpzb24.c2ln")
    assert caught.value.code is ErrorCode.TOKEN_MALFORMED


def test_a_permit_that_fails_verification_refuses_its_own_jurisdictions_only() -> None:
    expired = permit(FR, now=time.time() - 3600)
    forged = permit(DK, key=Ed25519PrivateKey.generate())  # DK's issuer, another key
    presented = present(expired, forged, permit(NO))
    assert [p.approval.request_id for p in presented.permits] == ["DR-NO"]
    assert refusal(presented, FR) == [
        (RuleId.APPROVAL_EXPIRED, f"the permit of {hdab(FR)} does not verify: token has expired")
    ]
    assert refusal(presented, DK) == [
        (
            RuleId.PERMIT_INVALID,
            f"the permit of {hdab(DK)} does not verify: token signature does not verify",
        )
    ]
    assert candidates(presented, NO, REQUEST_ID, allowed).permits == presented.permits


@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        ({"sub": "someone-else@test.eu"}, "is for another researcher than the one authenticated"),
        ({"roles": ["operator"]}, "lacks the researcher role"),
        ({"purpose": None}, "carries no well-formed approval claim"),
    ],
)
def test_a_permit_not_fit_for_this_researcher_is_invalid(
    claims: dict[str, Any], problem: str
) -> None:
    presented = present(permit(FR, **claims), permit(DK))
    assert refusal(presented, FR) == [
        (RuleId.PERMIT_INVALID, f"the permit of {hdab(FR)} {problem}")
    ]
    assert [p.approval.request_id for p in presented.permits] == ["DR-DK"]


# -- each jurisdiction's permit ------------------------------------------------------------------
def test_a_jurisdiction_without_a_permit_is_missing_one() -> None:
    presented = present(permit(FR))
    assert refusal(presented, DK) == [
        (RuleId.PERMIT_MISSING, "no permit from an HDAB that decides for DK was presented")
    ]


def test_a_permit_of_another_hdab_does_not_decide_a_jurisdiction() -> None:
    # DK's HDAB approves FR too: it is not FR's HDAB, so FR has no permit.
    presented = present(permit(DK, jurisdictions=["DK", "FR"]))
    assert [rule for rule, _ in refusal(presented, FR)] == [RuleId.PERMIT_MISSING]
    assert candidates(presented, DK, REQUEST_ID, allowed).permits


def test_a_shared_issuer_decides_what_its_permit_covers() -> None:
    presented = present(permit(FR, key=SHARED_KEY, iss=ISSUER, jurisdictions=["FR", "DK"]))
    assert candidates(presented, FR, REQUEST_ID, allowed).permits
    assert candidates(presented, DK, REQUEST_ID, allowed).permits
    assert refusal(presented, NO) == [(RuleId.APPROVAL_SCOPE, "the permits do not cover NO")]


def test_the_permit_naming_the_question_comes_first() -> None:
    other = permit(FR, request_id="DR-FR-OTHER", application_id=None)
    this = permit(FR)
    found = candidates(present(other, this), FR, REQUEST_ID, allowed)
    assert [p.approval.request_id for p in found.permits] == ["DR-FR", "DR-FR-OTHER"]


# -- deciding each jurisdiction on its own permit ------------------------------------------------
def test_each_jurisdiction_is_decided_on_its_own_permit() -> None:
    plan = make_plan()
    presented = present(
        permit(FR),
        permit(DK, purpose="advertising_marketing"),
        permit(NO, request_id="DR-NO", application_id="APP-OTHER"),
    )
    access = decide_access(plan, presented, POLICIES, allowed=allowed)
    assert access.decisions[FR].allowed
    assert access.decisions[DK].rules == {RuleId.PURPOSE_PROHIBITED}
    assert access.decisions[NO].rules == {RuleId.REQUEST_MISMATCH}
    # The permit each was decided on, allowed or not: the one its node would get.
    assert {j: p.approval.request_id for j, p in access.permits.items()} == {
        FR: "DR-FR",
        DK: "DR-DK",
        NO: "DR-NO",
    }


def test_a_revoked_permit_refuses_its_jurisdiction_and_another_permit_may_stand_in(
    tmp_path: Path,
) -> None:
    policies = load_policy_set(revoking(tmp_path / "policies", FR, "DR-FR"))
    plan = make_plan()
    access = decide_access(
        plan, present(permit(FR), permit(DK), permit(NO)), policies, allowed=allowed
    )
    assert access.decisions[FR].rules == {RuleId.APPROVAL_REVOKED}
    assert access.decisions[DK].allowed
    assert access.decisions[NO].allowed
    # A second FR permit of the same application, not revoked, decides FR instead.
    again = present(permit(FR), permit(FR, request_id="DR-FR-2"), permit(DK), permit(NO))
    access = decide_access(plan, again, policies, allowed=allowed)
    assert access.decisions[FR].allowed
    assert access.permits[FR].approval.request_id == "DR-FR-2"


def test_datasets_the_federation_file_names_are_checked_at_the_gateway() -> None:
    plan = make_plan()
    presented = present(permit(FR, datasets=["another-registry"]), permit(DK, datasets=[]))
    served = {j: frozenset({f"tessera-node-{j.value.lower()}"}) for j in MEMBERS}
    access = decide_access(plan, presented, POLICIES, allowed=allowed, datasets=served)
    assert access.decisions[FR].rules == {RuleId.DATASET_NOT_APPROVED}
    assert access.decisions[DK].rules == {RuleId.DATASET_NOT_APPROVED}
    assert access.decisions[NO].rules == {RuleId.PERMIT_MISSING}
    # Without them the gateway leaves the datasets to the nodes.
    assert decide_access(plan, presented, POLICIES, allowed=allowed).decisions[FR].allowed
