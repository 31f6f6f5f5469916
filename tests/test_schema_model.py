"""`Contract.trusted` (and `trusted_each`): the model validation would make, from parts already
valid."""

from __future__ import annotations

import pytest

from schema.codes import MeasureKind, ValueStatus
from schema.result import Reason, Value
from schema.wire import NodeCell

COUNT = MeasureKind.PERSON_COUNT


def test_a_trusted_model_is_the_validated_one() -> None:
    reason = Reason(rule="NOISE", message="noise")
    fields = {"value": 12, "status": ValueStatus.PERTURBED, "reasons": [reason], "bound": None}
    trusted = Value.trusted(**fields, sd=5.0, contributors=None)
    validated = Value(**fields, sd=5.0, contributors=None)
    assert trusted == validated
    assert trusted.model_fields_set == validated.model_fields_set
    assert trusted.model_dump_json() == validated.model_dump_json()
    cell = NodeCell.trusted(key=["F"], values={COUNT: trusted})
    assert cell.model_dump() == NodeCell(key=["F"], values={COUNT: validated}).model_dump()
    with pytest.raises(ValueError, match="frozen"):
        cell.key = []  # type: ignore[misc]


def test_a_trusted_model_takes_exactly_its_fields() -> None:
    with pytest.raises(TypeError, match="exactly its fields"):
        Value.trusted(value=None, status=ValueStatus.LOW)  # defaults are not filled in
    with pytest.raises(TypeError, match="exactly its fields"):
        NodeCell.trusted(key=[], values={COUNT: Value.exact(1)}, extra=1)


def test_trusted_each_makes_what_trusted_makes_one_by_one() -> None:
    values = [Value.exact(n) for n in (3, 4)]
    each = NodeCell.trusted_each([{"key": [str(v.value)], "values": {COUNT: v}} for v in values])
    alone = [NodeCell.trusted(key=[str(v.value)], values={COUNT: v}) for v in values]
    assert each == alone
    assert [c.model_fields_set for c in each] == [c.model_fields_set for c in alone]
    with pytest.raises(TypeError, match="exactly its fields"):
        NodeCell.trusted_each([{"key": ["F"], "values": {COUNT: values[0]}}, {"key": ["M"]}])
