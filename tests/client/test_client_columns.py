"""Tables sent as columns read as the same rows and frames as their cells: the grid completed
for a node that did not answer, withheld values `<NA>`, reasons named by index, a row without a
summary, an empty table (the integration tests compare both forms of real answers:
tests/integration/test_columns.py)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from tessera.client import Response
from tessera.client.columns import cells_of, cells_of_table
from tests.client.client_kit import cohort_with_a_denied_node

NUMBER_FIELDS = ("value", "status", "sd", "bound", "contributors")


def number_column(numbers: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Numbers as the gateway's columns spell them: the distinct reasons once, by index."""
    reasons: list[Any] = []
    indexes = []
    for number in numbers:
        row = []
        for reason in (number or {}).get("reasons") or ():
            if reason not in reasons:
                reasons.append(reason)
            row.append(reasons.index(reason))
        indexes.append(row)
    column: dict[str, Any] = {
        f: [None if n is None else n.get(f) for n in numbers] for f in NUMBER_FIELDS
    }
    return {**column, "reasons": reasons, "reasonIndexes": indexes}


def as_columns(table: Mapping[str, Any]) -> dict[str, Any]:
    cells = table["cells"]
    return {
        "by": table["by"],
        "columns": {
            "rows": len(cells),
            "dimensions": [
                {"name": name, "values": [c["dimensions"][i]["value"] for c in cells]}
                for i, name in enumerate(table["by"])
            ],
            "count": number_column([c["count"] for c in cells]),
        },
    }


def test_columns_read_as_the_same_rows_and_frames_as_cells() -> None:
    cells = cohort_with_a_denied_node()
    columns = copy.deepcopy(cells)
    for alias in ("b0", "b1"):
        columns["cohort"][alias] = as_columns(cells["cohort"][alias])
    from_cells = Response.read(cells).answer
    from_columns = Response.read(columns).answer
    assert list(from_columns.tables) == ["b0", "b1"]
    for alias in ("b0", "b1"):
        assert from_columns.rows(alias) == from_cells.rows(alias)
        pd.testing.assert_frame_equal(from_columns.frame(alias), from_cells.frame(alias))
    pd.testing.assert_frame_equal(from_columns.all_frame(), from_cells.all_frame())
    # DK denied: its rows are in the grid, without a value, saying why.
    dk = from_columns.frame("b0").query("jurisdiction == 'DK'")
    assert len(dk) == 3
    assert dk["value"].isna().all()
    assert set(dk["node_status"]) == {"DENIED"}


def test_a_row_without_a_summary_has_none_and_an_empty_table_no_cells() -> None:
    n = {"value": [12, None], "status": ["PERTURBED", None], "reasons": [], "reasonIndexes": []}
    n["reasonIndexes"] = [[], []]
    columns = {
        "rows": 2,
        "dimensions": [{"name": "SEX", "values": ["FEMALE", "MALE"]}],
        "summary": {"n": n},
        "rate": None,
    }
    cells = cells_of(columns)
    assert cells[0]["summary"] == {"n": {"value": 12, "status": "PERTURBED", "reasons": []}}
    assert cells[1]["summary"] is None
    assert [c["rate"] for c in cells] == [None, None]
    assert cells_of_table({"by": ["SEX"], "columns": {"rows": 0, "dimensions": []}}) == []
    assert cells_of_table({"by": ["SEX"]}) is None
