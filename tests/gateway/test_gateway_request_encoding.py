"""A node request's body (`gateway.nodes.encode_request`): the question's part encoded once
for every node asked it, the body byte for byte the model's own JSON (the node checks the
request token's hash of these bytes)."""

from __future__ import annotations

import datetime as dt

import orjson

from gateway.nodes import encode_request
from gateway.planner import plan_query
from schema.codes import Dimension, Jurisdiction
from schema.pooling import PoolingRequest
from schema.wire import NodeRequest
from tests.gateway.gateway_kit import APPROVAL, REQUEST_ID, SUBJECT

MEMBERS = [Jurisdiction.FR, Jurisdiction.DK, Jurisdiction.NO]


def _requests(age_min: int) -> list[NodeRequest]:
    plan = plan_query(
        members=MEMBERS,
        subject=SUBJECT,
        request_id=REQUEST_ID,
        criteria={"sex": "FEMALE", "age": {"min": age_min, "max": 69}},
        jurisdictions=None,
        reference_date=dt.date(2026, 1, 1),
        tables=[(), (Dimension.SEX, Dimension.AGE_BAND_10)],
    )
    pooling = PoolingRequest(
        nonce="n" * 43,
        round=1,
        participants=["tessera-node-dk", "tessera-node-fr"],
        sigma=5.0,
        tables=[(Dimension.SEX, Dimension.AGE_BAND_10)],
        national=[()],
    )
    return [
        plan.node_request(j, APPROVAL, pooling if j is not Jurisdiction.NO else None)
        for j in MEMBERS
    ]


def _own_json(request: NodeRequest) -> bytes:
    return orjson.dumps(request.model_dump(mode="json"))


def test_each_body_is_its_request_as_json_byte_for_byte() -> None:
    requests = _requests(40)
    assert len({id(r.query) for r in requests}) == 1  # one question, asked of every node
    for request in requests:
        assert encode_request(request) == _own_json(request)
        assert encode_request(request) == _own_json(request)  # encoded again, the same
    assert orjson.loads(encode_request(requests[0]))["pooling"]["nonce"] == "n" * 43


def test_another_question_is_encoded_as_itself() -> None:
    base = _requests(40)[2]
    addresses: set[int] = set()
    reused = 0
    for age in range(20, 60):
        # Each question dropped before the next is made: a new query often lands where the
        # last one was (the same id), and must not be sent as that one.
        criteria = base.query.criteria
        age_range = criteria.age.model_copy(update={"min": age})  # type: ignore[union-attr]
        query = base.query.model_copy(
            update={"criteria": criteria.model_copy(update={"age": age_range})}
        )
        request = base.model_copy(update={"query": query})
        reused += id(query) in addresses
        addresses.add(id(query))
        body = encode_request(request)
        assert body == _own_json(request)
        assert orjson.loads(body)["query"]["criteria"]["age"]["min"] == age
        del query, request
    assert reused  # the case this checks did arise
