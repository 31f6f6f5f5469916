"""A node's answer decoded once: its tables as columns of values, and its hash, in one pass.

`decode_answer` reads an answer's bytes with orjson, checks its envelope (everything but the
tables: a few fields) with `NodeResponse`'s own validator, and checks its tables by hand, cell
by cell, exactly as `NodeResponse` would: the same fields, types, bounds and rules, but with no
model per cell, no validator called per cell, and the plain form `model_dump(mode="json")`
would give (which the answer's hash is taken of, on both sides) made in the same pass.

The hand check only ever accepts what `NodeResponse` accepts: whatever it is not sure of
(an unknown field, an integer orjson cannot hold, a float where an integer belongs, ...)
makes `decode_answer` return None, and the caller decides with `NodeResponse` itself, whose
verdict (and message) is then the one that counts. An answer already validated as a model
(`decode_response`) is decoded from its plain form by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson
from pydantic import ValidationError

from schema.audit.entry import released_hash
from schema.codes import WITHHELD, Dimension, Jurisdiction, MeasureKind, ValueStatus
from schema.measures import MEASURES
from schema.query import Breakdown
from schema.result import Reason, Value
from schema.wire import NodeCell, NodeResponse, NodeTable

CellKey = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DecodedTable:
    """One table of an answer as columns: its cells' keys in the answer's order, and for
    each measure the cell's value at the same index (a cell without a measure: None)."""

    by: Breakdown
    keys: list[CellKey]
    values: dict[MeasureKind, list[Value | None]]
    # Each cell's set of measures is the same as the first cell's.
    uniform: bool


@dataclass(frozen=True, slots=True)
class DecodedAnswer:
    """A node's answer checked against `tessera/1`: its envelope (`head`, a `NodeResponse`
    without tables), its tables as columns, and what the audit trail records of its values:
    the answer's hash (`released_hash` of `model_dump(mode="json")`, as the node records
    it), every rule its values' reasons name, and how many values it withheld."""

    head: NodeResponse
    tables: list[DecodedTable]
    hash: str
    rules: frozenset[str]
    withheld: int


class _Unsure(Exception):
    """What the hand check does not accept: `NodeResponse` decides instead."""


_STATUSES: Final = {s.value: (s, s in WITHHELD) for s in ValueStatus}
# Each measure with the least value it may have (a measure with no spec has no values).
_KINDS: Final = {k.value: (k, MEASURES[k].minimum) for k in MeasureKind if k in MEASURES}
_DIMENSIONS: Final = {d.value: d for d in Dimension}
_JURISDICTIONS: Final = {j.value: j for j in Jurisdiction}
_VALUE_FIELDS: Final = frozenset(Value.model_fields)
# Every field of a value made here is set (shared: a frozen model never changes it).
_VALUE_FIELDS_SET: Final = set(Value.model_fields)
_new_value = Value.__new__
_set = object.__setattr__
_VALUE_REQUIRED: Final = frozenset({"value", "status"})
_TABLE_FIELDS: Final = frozenset({"by", "cells"})
_CELL_FIELDS: Final = frozenset({"key", "values"})
_MAX_KEY: Final = 4
_MAX_STR: Final = 256
_MAX_SD: Final = 1e9
# What the hand check reads: a field added to the models would pass it unread, a changed
# string bound unchecked, so a change to them stops the gateway here until it is made here too.
if (
    set(Value.model_fields) != {"value", "status", "reasons", "bound", "sd", "contributors"}
    or set(NodeCell.model_fields) != _CELL_FIELDS
    or set(NodeTable.model_fields) != _TABLE_FIELDS
    or NodeResponse.model_config.get("str_max_length") != _MAX_STR
):
    raise RuntimeError("gateway.answer_decoding no longer matches schema.wire's models")


def decode_answer(body: bytes) -> DecodedAnswer | None:
    """The answer in `body`, checked; None when `NodeResponse` must decide (the answer may be
    malformed, or only unusual)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    tables = data.pop("tables", [])
    try:
        head = NodeResponse.model_validate_json(orjson.dumps(data), strict=True)
        return _decode(head, tables)
    # A name that is not one (KeyError) or not even a string (TypeError): `NodeResponse`
    # says what is wrong.
    except (ValidationError, _Unsure, KeyError, TypeError):
        return None


def decode_response(response: NodeResponse) -> DecodedAnswer | None:
    """`decode_answer` of an answer that is a model already (made, or validated, elsewhere);
    None if its tables do not follow `tessera/1` (a model copied with other fields is not
    validated again), or cannot be hashed."""
    data = response.model_dump(mode="json")
    try:
        return _decode(response.model_copy(update={"tables": []}), data["tables"])
    except (_Unsure, KeyError, TypeError):
        return None


def _decode(head: NodeResponse, tables: Any) -> DecodedAnswer:
    """The answer's tables checked and as columns; `tables` (the answer as read, which
    nothing else holds) made its plain form in place, for the hash: a node writes every
    field (`model_dump(mode="json")`), so only a value that leaves one out is made again."""
    if type(tables) is not list:
        raise _Unsure
    reasons = _Reasons()
    decoded: list[DecodedTable] = []
    withheld = 0
    for table in tables:
        if type(table) is not dict or table.keys() != _TABLE_FIELDS:
            raise _Unsure
        by = _breakdown(table["by"])
        cells = table["cells"]
        if type(cells) is not list:
            raise _Unsure
        keys: list[CellKey] = []
        columns: dict[MeasureKind, list[Value | None]] = {}
        first: Any = None
        uniform = True
        for i, cell in enumerate(cells):
            if type(cell) is not dict or cell.keys() != _CELL_FIELDS:
                raise _Unsure
            key, values = cell["key"], cell["values"]
            if type(key) is not list or len(key) > _MAX_KEY:
                raise _Unsure
            for part in key:
                if type(part) is not str or len(part) > _MAX_STR:
                    raise _Unsure
            if type(values) is not dict or not 0 < len(values) <= len(_KINDS):
                raise _Unsure
            if first is None:
                first = values.keys()
            elif values.keys() != first:
                uniform = False
            for name, given in values.items():
                kind, minimum = _KINDS[name]
                value, plain = _value(given, minimum, reasons)
                if plain is not None:
                    values[name] = plain
                column = columns.get(kind)
                if column is None:
                    column = columns[kind] = [None] * i
                column.append(value)
                if value.value is None:
                    withheld += 1
            if len(columns) > len(values):
                for column in columns.values():
                    if len(column) == i:  # a measure this cell does not carry
                        column.append(None)
            keys.append(tuple(key))
        decoded.append(DecodedTable(by, keys, columns, uniform))
    whole = head.model_dump(mode="json")
    whole["tables"] = tables
    try:
        digest = released_hash(whole)
    except TypeError:
        # An integer beyond 64 bits (which only a model, not orjson, reads): no node writes
        # one, and an answer that cannot be hashed cannot be recorded, so it is not taken.
        raise _Unsure from None
    return DecodedAnswer(
        head=head,
        tables=decoded,
        hash=digest,
        rules=frozenset(reasons.rules),
        withheld=withheld,
    )


_BREAKDOWNS: dict[tuple[str, ...], Breakdown] = {}
_MAX_BREAKDOWNS: Final = 1024


def _breakdown(given: Any) -> Breakdown:
    if type(given) is not list:
        raise _Unsure
    names = tuple(given)
    try:
        by = _BREAKDOWNS.get(names)
        if by is None:
            by = tuple(_DIMENSIONS[name] for name in names)
    except (KeyError, TypeError):  # an unknown name, or one that is no string
        raise _Unsure from None
    if names not in _BREAKDOWNS and len(_BREAKDOWNS) < _MAX_BREAKDOWNS:
        _BREAKDOWNS[names] = by
    return by


def _value(given: Any, minimum: int, reasons: _Reasons) -> tuple[Value, dict[str, Any] | None]:
    """A value as `Value` (and `NodeCell`) validate it, and its plain form if `given` is not
    that already."""
    if type(given) is not dict:
        raise _Unsure
    fields = given.keys()
    if fields == _VALUE_FIELDS:
        complete = True
        number, name = given["value"], given["status"]
        bound, sd = given["bound"], given["sd"]
        contributors, given_reasons = given["contributors"], given["reasons"]
    elif fields <= _VALUE_FIELDS and fields >= _VALUE_REQUIRED:
        complete = False
        number, name = given["value"], given["status"]
        bound, sd = given.get("bound"), given.get("sd")
        contributors, given_reasons = given.get("contributors"), given.get("reasons", [])
    else:
        raise _Unsure
    status, withheld = _STATUSES[name]
    if number is None:
        if not withheld:
            raise _Unsure
    elif withheld or type(number) is not int or number < minimum:
        raise _Unsure
    if bound is not None:
        if type(bound) is not float:
            bound, complete = _float(bound), False
        if not bound >= 0:
            raise _Unsure
    if sd is not None:
        if type(sd) is not float:
            sd, complete = _float(sd), False
        if not 0 <= sd <= _MAX_SD:
            raise _Unsure
    if contributors is not None:
        contributors = _contributors(contributors)
    if type(given_reasons) is not list:
        raise _Unsure
    made, plain_reasons = reasons.each(given_reasons) if given_reasons else ([], None)
    model = _new_value(Value)
    _set(
        model,
        "__dict__",
        {
            "value": number,
            "status": status,
            "reasons": made,
            "bound": bound,
            "sd": sd,
            "contributors": contributors,
        },
    )
    _set(model, "__pydantic_fields_set__", _VALUE_FIELDS_SET)
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    if complete and plain_reasons is None:
        return model, None
    return model, {
        "value": number,
        "status": name,
        "reasons": given_reasons if plain_reasons is None else plain_reasons,
        "bound": bound,
        "sd": sd,
        "contributors": None if contributors is None else [j.value for j in contributors],
    }


def _float(given: Any) -> float:
    """A float field in strict mode from JSON: a number (an integer too), not a boolean."""
    if type(given) is int:
        return float(given)
    raise _Unsure


def _contributors(given: Any) -> list[Jurisdiction]:
    if type(given) is not list:
        raise _Unsure
    try:
        return [_JURISDICTIONS[j] for j in given]
    except (KeyError, TypeError):
        raise _Unsure from None


class _Reasons:
    """The reasons of one answer's values, each distinct one validated once (an answer
    repeats a handful of them over its cells)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[tuple[str, Any], ...], tuple[Reason, dict[str, Any] | None]] = {}
        self.rules: set[str] = set()

    def each(self, given: list[Any]) -> tuple[list[Reason], list[dict[str, Any]] | None]:
        """The reasons as models, and their plain forms unless `given` is that already."""
        made: list[Reason] = []
        plain: list[dict[str, Any]] | None = None
        for i, reason in enumerate(given):
            if type(reason) is not dict:
                raise _Unsure
            key = tuple(reason.items())  # TypeError for a list or an object in a field
            seen = self._seen.get(key)
            if seen is None:
                try:
                    checked = Reason.model_validate_json(orjson.dumps(reason), strict=True)
                except ValidationError:
                    raise _Unsure from None
                dumped = checked.model_dump(mode="json")
                seen = self._seen[key] = (checked, None if dumped == reason else dumped)
                self.rules.add(checked.rule)
            made.append(seen[0])
            if seen[1] is not None and plain is None:
                plain = list(given[:i])
            if plain is not None:
                plain.append(reason if seen[1] is None else seen[1])
        return made, plain
