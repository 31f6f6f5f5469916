"""Answers as tidy rows and frames: the full grid, numeric band order, typed columns, export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tessera.client import POOLED, Response, read_csv
from tessera.client.answer import age_bounds
from tests.client.client_kit import cohort_with_a_denied_node


@pytest.fixture
def answer() -> object:
    return Response.read(cohort_with_a_denied_node()).answer


def test_a_table_by_jurisdiction_lists_every_jurisdiction_asked_even_the_denied() -> None:
    answer = Response.read(cohort_with_a_denied_node()).answer
    rows = answer.rows("JURISDICTION,AGE_BAND_5")
    # 3 jurisdictions asked x 3 bands, though the gateway listed cells of 2 only.
    assert len(rows) == 9
    denied = [r for r in rows if r["jurisdiction"] == "DK"]
    assert [r["age_band"] for r in denied] == ["5-9", "10-14", "15-19"]
    assert all(r["value"] is None for r in denied)
    assert all(r["status"] is None for r in denied)
    assert {r["node_status"] for r in denied} == {"DENIED"}
    assert {r["reasons"] for r in denied} == {"DK:PERMIT_MISSING"}
    # Nothing is made up for the nodes that answered: their cells as released.
    fr = [r for r in rows if r["jurisdiction"] == "FR"]
    assert [(r["value"], r["status"]) for r in fr] == [
        (20, "PERTURBED"),
        (20, "PERTURBED"),
        (None, "LOW"),
    ]
    assert {r["node_status"] for r in fr} == {"OK"}


def test_bands_are_ordered_as_numbers_with_numeric_bounds() -> None:
    answer = Response.read(cohort_with_a_denied_node()).answer
    rows = answer.rows(["JURISDICTION", "AGE_BAND_5"])
    assert [(r["age_min"], r["age_max"]) for r in rows[:3]] == [(5, 9), (10, 14), (15, 19)]
    assert [r["jurisdiction"] for r in rows[::3]] == ["DK", "FR", "DE"]  # the gateway's order
    assert age_bounds("90+") == (90, None)
    assert age_bounds("UNKNOWN") == (None, None)


def test_a_pooled_table_is_marked_pooled_and_sex_keeps_its_order() -> None:
    rows = Response.read(cohort_with_a_denied_node()).answer.rows("SEX")
    assert [r["sex"] for r in rows] == ["FEMALE", "MALE", "UNKNOWN"]
    assert {r["jurisdiction"] for r in rows} == {POOLED}
    assert "node_status" not in rows[0]


def test_all_rows_stack_the_pooled_count_the_nodes_and_every_table() -> None:
    answer = Response.read(cohort_with_a_denied_node()).answer
    rows = answer.all_rows()
    tables = [r["table"] for r in rows]
    assert tables.count("count") == 1
    assert tables.count("byJurisdiction") == 3
    assert tables.count("JURISDICTION,AGE_BAND_5") == 9
    assert tables.count("SEX") == 3
    total = rows[0]
    assert (total["jurisdiction"], total["value"], total["contributors"]) == (POOLED, 200, "FR,DE")
    dk = next(r for r in rows if r["table"] == "byJurisdiction" and r["jurisdiction"] == "DK")
    assert (dk["value"], dk["node_status"], dk["reasons"]) == (None, "DENIED", "DK:PERMIT_MISSING")
    # Several tables and no choice: every number.
    assert answer.rows() == rows


def test_the_frame_is_typed_and_sorts_bands_as_numbers() -> None:
    frame = Response.read(cohort_with_a_denied_node()).answer.frame("JURISDICTION,AGE_BAND_5")
    assert list(frame.columns) == [
        "jurisdiction",
        "age_band",
        "age_min",
        "age_max",
        "value",
        "sd",
        "status",
        "bound",
        "reasons",
        "contributors",
        "node_status",
    ]
    assert str(frame["value"].dtype) == "Int64"
    assert str(frame["age_min"].dtype) == "Int64"
    assert frame["age_band"].cat.ordered
    assert list(frame["age_band"].cat.categories) == ["5-9", "10-14", "15-19"]
    assert frame.sort_values("age_band")["age_min"].is_monotonic_increasing
    assert frame["value"].isna().sum() == 3 + 2  # DK's three, and the LOW band of FR, DE
    # A withheld count is missing, never zero.
    assert not (frame["value"] == 0).any()


def test_node_frame_has_status_latency_and_spend() -> None:
    frame = Response.read(cohort_with_a_denied_node()).answer.nodes_frame()
    assert list(frame["jurisdiction"]) == ["DK", "FR", "DE"]
    assert list(frame["node_status"]) == ["DENIED", "OK", "OK"]
    assert pd.isna(frame.loc[0, "latency_ms"])
    assert frame.loc[1, "latency_ms"] == 12.5
    assert frame.loc[1, "question_rho"] == pytest.approx(0.04)


def test_csv_and_parquet_round_trip(tmp_path: Path) -> None:
    answer = Response.read(cohort_with_a_denied_node()).answer
    for which in ("JURISDICTION,AGE_BAND_5", "SEX"):
        frame = answer.frame(which)
        csv_path = answer.to_csv(tmp_path / "t.csv", which)
        pd.testing.assert_frame_equal(read_csv(csv_path), frame)
        parquet_path = answer.to_parquet(tmp_path / "t.parquet", which)
        pd.testing.assert_frame_equal(pd.read_parquet(parquet_path), frame)
    everything = Response.read(cohort_with_a_denied_node())
    pd.testing.assert_frame_equal(
        read_csv(everything.to_csv(tmp_path / "all.csv")), everything.frame()
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(everything.to_parquet(tmp_path / "all.parquet")), everything.frame()
    )


def test_a_response_without_a_cohort_keeps_its_data() -> None:
    response = Response.read({"jurisdictions": [{"code": "FR", "minCount": 11}]})
    assert response.answers == {}
    assert response.data["jurisdictions"][0]["code"] == "FR"
    with pytest.raises(KeyError):
        _ = response.answer


def test_a_table_without_cells_or_dimensions_has_no_rows() -> None:
    data = cohort_with_a_denied_node()
    data["cohort"]["b2"] = {"cells": []}  # `by` not selected, and every node denied
    answer = Response.read(data).answer
    assert answer.tables["b2"].rows == ()
    assert len(answer.all_rows()) == 1 + 3 + 9 + 3


def test_rows_need_no_pandas_and_frames_say_how_to_get_it() -> None:
    script = (
        "import sys; sys.modules['pandas'] = None\n"
        "from tessera.client import Response\n"
        "from tests.client.client_kit import cohort_with_a_denied_node\n"
        "answer = Response.read(cohort_with_a_denied_node()).answer\n"
        "assert len(answer.rows('SEX')) == 3\n"
        "try:\n"
        "    answer.frame('SEX')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'tessera[client]'" in done.stdout
