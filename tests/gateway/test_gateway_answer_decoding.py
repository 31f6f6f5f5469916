"""Node answers decoded once (`gateway.answer_decoding`): what the hand check accepts,
`NodeResponse` accepts too, with the same values and the same hash; whatever it does not,
`NodeResponse` decides. Checked on a valid answer and on thousands of its corruptions."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.answer_decoding import DecodedAnswer, decode_answer, decode_response
from gateway.federation import NodeInfo
from gateway.nodes import interpret
from gateway.planner import plan_query
from schema.audit.entry import released_hash
from schema.codes import Dimension, Jurisdiction, MeasureKind, NodeStatus
from schema.query import CohortQuery, Criteria
from schema.wire import NodeRequest, NodeResponse
from tests.gateway.gateway_kit import APPROVAL, REQUEST_ID, SUBJECT

COUNT_KIND = MeasureKind.PERSON_COUNT
LOW_REASON = {"rule": "BELOW_MINIMUM", "jurisdiction": "FR", "message": "below 10"}


def _value(n: int | None, **more: Any) -> dict[str, Any]:
    status = "LOW" if n is None else "PERTURBED"
    return {"value": n, "status": status, "sd": 5.0, **more}


# Every kind of field a value may carry: reasons, bound, sd as an integer, contributors, a
# negative sum, and fields left to their defaults.
ANSWER: dict[str, Any] = {
    "protocol": "tessera/1",
    "query_id": "q-00000001",
    "jurisdiction": "FR",
    "status": "OK",
    "elapsed_ms": 2.5,
    "vocabularies": ["ICD10"],
    "reasons": [{"rule": "NOISE", "message": "noise of sd 5"}],
    "tables": [
        {
            "by": [],
            "cells": [
                {
                    "key": [],
                    "values": {
                        "PERSON_COUNT": _value(300, bound=0.0),
                        "VALUE_SUM": {"value": -40, "status": "PERTURBED", "sd": 7},
                    },
                }
            ],
        },
        {
            "by": ["SEX"],
            "cells": [
                {
                    "key": ["FEMALE"],
                    "values": {
                        "PERSON_COUNT": _value(None, reasons=[LOW_REASON]),
                        "VALUE_SUM": {"value": None, "status": "SUPPRESSED", "reasons": []},
                    },
                },
                {
                    "key": ["MALE"],
                    "values": {
                        "PERSON_COUNT": _value(120, contributors=["FR", "DK"], bound=1),
                        "VALUE_SUM": {"value": 12, "status": "PERTURBED"},
                    },
                },
                {
                    "key": ["UNKNOWN"],
                    "values": {
                        "PERSON_COUNT": _value(None, reasons=[LOW_REASON]),
                        "VALUE_SUM": {"value": None, "status": "LOW", "reasons": [LOW_REASON]},
                    },
                },
            ],
        },
    ],
}


def _pydantic(body: bytes) -> NodeResponse | None:
    try:
        return NodeResponse.model_validate_json(body, strict=True)
    except ValidationError:
        return None


def _same(decoded: DecodedAnswer, response: NodeResponse) -> None:
    """`decoded` says what `response` says: envelope, tables, every value, and hash."""
    assert decoded.head == response.model_copy(update={"tables": []})
    assert decoded.hash == released_hash(response.model_dump(mode="json"))
    assert [t.by for t in decoded.tables] == [t.by for t in response.tables]
    for table, model in zip(decoded.tables, response.tables, strict=True):
        assert table.keys == [tuple(c.key) for c in model.cells]
        for i, cell in enumerate(model.cells):
            carried = {k: column[i] for k, column in table.values.items() if column[i] is not None}
            assert carried == cell.values
    values = [v for t in response.tables for v in t.values()]
    assert decoded.withheld == sum(v.value is None for v in values)
    assert decoded.rules == {r.rule for v in values for r in v.reasons}


def test_a_valid_answer_decodes_as_its_model_does() -> None:
    body = orjson.dumps(ANSWER)
    decoded = decode_answer(body)
    response = _pydantic(body)
    assert decoded is not None
    assert response is not None
    _same(decoded, response)
    assert decoded.withheld == 4
    assert decoded.rules == {"BELOW_MINIMUM"}
    # The same from the model itself, and from the model's own JSON (defaults written out).
    from_model = decode_response(response)
    assert from_model is not None
    _same(from_model, response)
    assert decode_answer(response.model_dump_json().encode()) == from_model


def _paths(data: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in `data` (keys of objects, indexes of lists)."""
    found = [at]
    if isinstance(data, dict):
        for key, item in data.items():
            found += _paths(item, (*at, key))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            found += _paths(item, (*at, i))
    return found


PATHS = _paths(ANSWER)[1:]
ODD = [
    None,
    True,
    0,
    -1,
    1,
    -(10**13),
    10**12,
    1.5,
    -0.5,
    2e9,
    "",
    "x",
    "FR",
    "SEX",
    "LOW",
    "PERTURBED",
    "PERSON_COUNT",
    "A" * 257,
    [],
    ["FEMALE"],
    ["MALE", "FEMALE", "UNKNOWN", "MALE", "FEMALE"],
    {},
    {"value": 1, "status": "EXACT"},
    {"rule": "X"},
]


def _set(data: Any, path: tuple[Any, ...], item: Any) -> None:
    for step in path[:-1]:
        data = data[step]
    data[path[-1]] = item


def _drop(data: Any, path: tuple[Any, ...]) -> None:
    for step in path[:-1]:
        data = data[step]
    del data[path[-1]]


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    """The valid answer with one to three places replaced, removed or added to."""
    answer = copy.deepcopy(ANSWER)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(answer)[1:]
        path = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(["replace", "drop", "extra"]))
        try:
            if how == "replace":
                _set(answer, path, copy.deepcopy(draw(st.sampled_from(ODD))))
            elif how == "drop":
                _drop(answer, path)
            else:
                _set(answer, (*path, "unexpected"), 1)
        except (TypeError, KeyError, IndexError):
            continue
    return orjson.dumps(answer)


@settings(max_examples=3000, deadline=None)
@given(corrupted())
def test_what_the_hand_check_accepts_the_model_accepts_alike(body: bytes) -> None:
    decoded = decode_answer(body)
    if decoded is None:
        return  # `NodeResponse` decides (`gateway.nodes.interpret`)
    response = _pydantic(body)
    assert response is not None, "accepted by hand, rejected by NodeResponse"
    _same(decoded, response)


@pytest.mark.parametrize(
    "body",
    [
        # An integer beyond 64 bits, which orjson does not read but NodeResponse does.
        orjson.dumps(ANSWER).replace(b'"value":120', b'"value":' + str(2**70).encode()),
        # A count where an integer belongs written as a float.
        orjson.dumps(ANSWER).replace(b'"value":120', b'"value":120.0'),
        # A count below its minimum.
        orjson.dumps(ANSWER).replace(b'"value":120', b'"value":-3'),
        # A field given twice: the last one counts, for both.
        orjson.dumps(ANSWER).replace(b'"value":120', b'"value":-3,"value":120'),
    ],
)
def test_an_answer_is_judged_as_its_model_judges_it(body: bytes) -> None:
    request = NodeRequest(
        query_id="q-00000001",
        request_id=REQUEST_ID,
        jurisdiction=Jurisdiction.FR,
        query=CohortQuery(criteria=Criteria(), reference_date="2026-01-01"),
        approval=APPROVAL,
        subject=SUBJECT,
    )
    node = NodeInfo(Jurisdiction.FR, "node-fr", "http://x")
    outcome = interpret(node, request, 200, body, 1.0)
    response = _pydantic(body)
    decoded = decode_answer(body)
    if response is not None and decode_response(response) is None:
        # Valid to the model, but with a number no node writes and no hash can hold: taken
        # as not following the protocol either.
        assert b"1180591620717411303424" in body
        response = None
    if response is None:
        assert decoded is None
        assert outcome.status is NodeStatus.REJECTED
        assert outcome.message == "the answer does not follow tessera/1"
        return
    if decoded is not None:
        _same(decoded, response)
    # Valid, though not what was asked (the question asked only the total).
    assert outcome.status is NodeStatus.REJECTED
    assert outcome.message == "the answer's tables differ from those asked"


def _count(n: int) -> dict[str, Any]:
    return {"PERSON_COUNT": _value(n)}


def _sex_request() -> NodeRequest:
    plan = plan_query(
        members=[Jurisdiction.FR],
        subject=SUBJECT,
        request_id=REQUEST_ID,
        criteria={},
        jurisdictions=None,
        reference_date=dt.date(2026, 1, 1),
        tables=[(), (Dimension.SEX,)],
    )
    return plan.node_request(Jurisdiction.FR, APPROVAL)


SEX_CELLS = [{"key": [k], "values": _count(100)} for k in ("FEMALE", "MALE", "UNKNOWN")]


@pytest.mark.parametrize(
    ("total", "by_sex", "message"),
    [
        ([{"key": [], "values": _count(300)}], SEX_CELLS, None),
        (
            [{"key": [], "values": _count(300)}],
            [*SEX_CELLS[:2], {"key": ["MALE"], "values": _count(100)}],
            "a table has a malformed or repeated cell key",
        ),
        (
            [{"key": [], "values": _count(300)}],
            [*SEX_CELLS[:2], {"key": ["UNKNOWN", "FEMALE"], "values": _count(1)}],
            "a table has a malformed or repeated cell key",
        ),
        (
            [{"key": [], "values": _count(300)}],
            [*SEX_CELLS[:2], {"key": ["UNKNOWN"], "values": {"VALUE_N": _value(100)}}],
            "a cell does not carry exactly the measures asked",
        ),
        (
            [{"key": [], "values": _count(300)}],
            [*SEX_CELLS[:2], {"key": ["UNKNOWN"], "values": {**_count(1), "VALUE_N": _value(1)}}],
            "a cell does not carry exactly the measures asked",
        ),
        (
            [{"key": [], "values": {"VALUE_N": _value(300)}}],
            SEX_CELLS,
            "a cell does not carry exactly the measures asked",
        ),
        (
            # Which comes first, cell by cell: the measures of the second cell.
            [{"key": [], "values": _count(300)}],
            [SEX_CELLS[0], {"key": ["MALE"], "values": {}}, SEX_CELLS[0]],
            "the answer does not follow tessera/1",  # a cell without values: NodeCell's
        ),
        (
            [{"key": [], "values": _count(300)}],
            [SEX_CELLS[0], {"key": ["MALE"], "values": {"VALUE_N": _value(1)}}, SEX_CELLS[0]],
            "a cell does not carry exactly the measures asked",
        ),
        (
            [{"key": [], "values": _count(300)}, {"key": [], "values": _count(300)}],
            SEX_CELLS,
            "a table has a malformed or repeated cell key",
        ),
        ([], SEX_CELLS, "the total table must have exactly one cell"),
    ],
    ids=[
        "valid",
        "repeated",
        "too-long",
        "other-measure",
        "extra-measure",
        "total-other-measure",
        "no-values",
        "measures-before-repeat",
        "two-totals",
        "no-total",
    ],
)
def test_each_cell_problem_is_named(
    total: list[dict[str, Any]], by_sex: list[dict[str, Any]], message: str | None
) -> None:
    request = _sex_request()
    body = orjson.dumps(
        {
            "query_id": request.query_id,
            "jurisdiction": "FR",
            "status": "OK",
            "tables": [{"by": [], "cells": total}, {"by": ["SEX"], "cells": by_sex}],
        }
    )
    outcome = interpret(NodeInfo(Jurisdiction.FR, "node-fr", "http://x"), request, 200, body, 1.0)
    if message is None:
        assert outcome.status is NodeStatus.OK
        assert outcome.measures[COUNT_KIND][(Dimension.SEX,)][("MALE",)].value == 100
    else:
        assert (outcome.status, outcome.message) == (NodeStatus.REJECTED, message)
