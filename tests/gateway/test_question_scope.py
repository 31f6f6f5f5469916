"""Which node requests a fan-out signs with its question token (`gateway.question_token`):
each planned request once, a retry or an unplanned request alone."""

from __future__ import annotations

import datetime as dt
import time

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.nodes import encode_request
from gateway.planner import plan_query
from gateway.question_token import FRESH_FOR_S, question_scope, take_signed
from schema.codes import Jurisdiction
from schema.wire import QUESTION_TOKEN_TYP, NodeRequest
from tests.gateway.gateway_kit import APPROVAL, MEMBERS, REQUEST_ID, SEX, SUBJECT
from trust.request_token import LIFETIME_S, RequestSigner, RequestVerifier

KEY = Ed25519PrivateKey.generate()
SIGNER = RequestSigner(issuer="tessera-gateway", kid="gateway-1", key=KEY, clock=time.time)


def requests() -> dict[str, NodeRequest]:
    plan = plan_query(
        subject=SUBJECT,
        members=MEMBERS,
        request_id=REQUEST_ID,
        criteria={},
        jurisdictions=None,
        reference_date=dt.date(2026, 1, 1),
        tables=[SEX],
    )
    return {f"tessera-node-{j.value.lower()}": plan.node_request(j, APPROVAL) for j in MEMBERS}


async def test_each_planned_request_gets_its_share_once() -> None:
    planned = requests()
    with question_scope(planned):
        signed = {n: take_signed(SIGNER, n, r, encode_request) for n, r in planned.items()}
        # A retry of a node (the resilience wrapper's) is signed alone.
        fr = "tessera-node-fr"
        assert take_signed(SIGNER, fr, planned[fr], encode_request) is None
    assert take_signed(SIGNER, fr, planned[fr], encode_request) is None  # scope closed
    (authorization,) = {s.credential.authorization for s in signed.values() if s is not None}
    token = authorization.removeprefix("Bearer ")
    assert jwt.get_unverified_header(token)["typ"] == QUESTION_TOKEN_TYP
    for n, s in signed.items():
        assert s is not None
        assert s.body == encode_request(planned[n])
        verifier = RequestVerifier(
            keys={"gateway-1": KEY.public_key()}, issuer="tessera-gateway", audience=n
        )
        await verifier.verify(s.credential.authorization, s.body, salt=s.credential.salt)


def test_a_request_the_scope_did_not_plan_is_signed_alone() -> None:
    planned = requests()
    fr = "tessera-node-fr"
    with question_scope(planned):
        # An equal request, but not the one planned (a wrapper that rewrote it).
        assert take_signed(SIGNER, fr, planned[fr].model_copy(), encode_request) is None
        assert take_signed(SIGNER, "tessera-node-xx", planned[fr], encode_request) is None


def test_a_request_that_waited_past_half_the_lifetime_is_signed_alone() -> None:
    planned = requests()
    now = [100.0]
    fr, dk, no = (f"tessera-node-{j}" for j in ("fr", "dk", "no"))
    with question_scope(planned, clock=lambda: now[0]):
        assert take_signed(SIGNER, fr, planned[fr], encode_request) is not None
        now[0] += FRESH_FOR_S
        assert take_signed(SIGNER, dk, planned[dk], encode_request) is not None
        now[0] += 0.01
        assert take_signed(SIGNER, no, planned[no], encode_request) is None
    assert FRESH_FOR_S == LIFETIME_S / 2


def test_one_node_is_signed_alone() -> None:
    fr = "tessera-node-fr"
    only = {fr: requests()[fr]}
    with question_scope(only):
        assert take_signed(SIGNER, fr, only[fr], encode_request) is None
    assert Jurisdiction.FR in MEMBERS
