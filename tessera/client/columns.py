"""A breakdown asked as columns (`breakdown { columns { … } }`), read back as the cells it
stands for.

The gateway completes a table's columns (lists of scalars, the reasons of each column listed
once and named by index in each row) for a fraction of what it spends on one object per cell;
the client asks for them and decodes them here into exactly the cells the gateway would have
sent, so that every row, frame and CSV is the same whichever form the answer came in.

    >>> columns = {"dimensions": [{"name": "SEX", "values": ["FEMALE", "MALE"]}],
    ...            "count": {"value": [12, None], "status": ["PERTURBED", "LOW"],
    ...                      "sd": [5.0, 5.0], "bound": [None, None],
    ...                      "contributors": [None, None],
    ...                      "reasons": [{"rule": "BELOW_MINIMUM", "jurisdiction": None,
    ...                                   "message": "m"}],
    ...                      "reasonIndexes": [[], [0]]}}
    >>> [c["count"]["value"] for c in cells_of(columns)]
    [12, None]
    >>> cells_of(columns)[1]["count"]["reasons"][0]["rule"]
    'BELOW_MINIMUM'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

REASON_FIELDS: Final = "reasons { rule jurisdiction message } reasonIndexes"
COUNT_COLUMN_FIELDS: Final = f"value status sd bound contributors {REASON_FIELDS}"
ESTIMATE_COLUMN_FIELDS: Final = f"value status sd bound {REASON_FIELDS}"
SUMMARY_COLUMN_FIELDS: Final = (
    f"summary {{ n {{ {COUNT_COLUMN_FIELDS} }} mean {{ {ESTIMATE_COLUMN_FIELDS} }} "
    f"variance {{ {ESTIMATE_COLUMN_FIELDS} }} sd {{ {ESTIMATE_COLUMN_FIELDS} }} "
    f"ciLow {{ {ESTIMATE_COLUMN_FIELDS} }} ciHigh {{ {ESTIMATE_COLUMN_FIELDS} }} }}"
)
RATE_COLUMN_FIELDS: Final = (
    f"rate {{ per events {{ {COUNT_COLUMN_FIELDS} }} personYears {{ {ESTIMATE_COLUMN_FIELDS} }} "
    f"rate {{ {ESTIMATE_COLUMN_FIELDS} }} ciLow {{ {ESTIMATE_COLUMN_FIELDS} }} "
    f"ciHigh {{ {ESTIMATE_COLUMN_FIELDS} }} }}"
)

_SUMMARY: Final = ("n", "mean", "variance", "sd", "ciLow", "ciHigh")
_RATE: Final = ("events", "personYears", "rate", "ciLow", "ciHigh")
_NUMBER_FIELDS: Final = ("value", "status", "sd", "bound", "contributors")


def cells_of(columns: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cells a table's columns stand for, in their order, each as the gateway spells a
    cell: `dimensions`, `count`, and `summary` and `rate` where asked (null in a row without
    one). Only the fields asked are in them."""
    dimensions = columns.get("dimensions") or []
    count = columns.get("count")
    summary = columns.get("summary")
    rate = columns.get("rate")
    rows = _rows(dimensions, count, summary, rate, columns.get("rows"))
    cells: list[dict[str, Any]] = [
        {"dimensions": [{"name": d["name"], "value": d["values"][i]} for d in dimensions]}
        for i in range(rows)
    ]
    if count is not None:
        for cell, number in zip(cells, _numbers(count, rows), strict=True):
            cell["count"] = number
    if "summary" in columns:
        _wholes(cells, "summary", summary, _SUMMARY, rows)
    if "rate" in columns:
        _wholes(cells, "rate", rate, _RATE, rows)
    return cells


def _rows(
    dimensions: Sequence[Mapping[str, Any]],
    count: Mapping[str, Any] | None,
    summary: Mapping[str, Any] | None,
    rate: Mapping[str, Any] | None,
    rows: int | None,
) -> int:
    if rows is not None:
        return rows
    for d in dimensions:
        return len(d["values"])
    for column in (count, *(summary or {}).values(), *(rate or {}).values()):
        if isinstance(column, Mapping):
            for values in column.values():
                if isinstance(values, list):
                    return len(values)
    return 0


def _numbers(column: Mapping[str, Any], rows: int) -> list[dict[str, Any] | None]:
    """Each row's number as a cell spells it (the fields asked), None where the row has none
    (no status)."""
    asked = [f for f in _NUMBER_FIELDS if f in column]
    lists = [column[f] for f in asked]
    reasons = column.get("reasons")
    indexes = column.get("reasonIndexes")
    statuses = column.get("status")
    numbers: list[dict[str, Any] | None] = []
    for i in range(rows):
        if statuses is not None and statuses[i] is None:
            numbers.append(None)
            continue
        number = {f: values[i] for f, values in zip(asked, lists, strict=True)}
        if reasons is not None and indexes is not None:
            number["reasons"] = [reasons[at] for at in indexes[i]]
        numbers.append(number)
    return numbers


def _wholes(
    cells: list[dict[str, Any]],
    name: str,
    columns: Mapping[str, Any] | None,
    parts: Sequence[str],
    rows: int,
) -> None:
    """A summary's or a rate's parts into each cell (`name`: null in every cell when the
    table has none, and in a row without one)."""
    if columns is None:
        for cell in cells:
            cell[name] = None
        return
    of_part = {p: _numbers(columns[p], rows) for p in parts if columns.get(p) is not None}
    per = columns.get("per")
    for i, cell in enumerate(cells):
        numbers = {p: found[i] for p, found in of_part.items()}
        if numbers and all(n is None for n in numbers.values()):
            cell[name] = None
            continue
        whole: dict[str, Any] = dict(numbers)
        if per is not None:
            whole["per"] = per[i]
        cell[name] = whole


def cells_of_table(table: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """A breakdown's cells, as sent or decoded from its columns; None when `table` is not a
    breakdown."""
    cells = table.get("cells")
    if isinstance(cells, list):
        return cells
    columns = table.get("columns")
    if isinstance(columns, Mapping):
        return cells_of(columns)
    return None
