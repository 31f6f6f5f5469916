"""The Spark scale bench (`bench/spark_scale.py`) runs end to end at a tiny size on a real local
Spark and DuckDB (`-m spark`, so that it cannot rot unseen), and its arithmetic (the line
through the sizes, the hub's forecast) is what bench/README.md says. No timing is asserted."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from bench.spark_scale import (
    EXECUTORS,
    HUB_EVENTS,
    HUB_PERSONS,
    SHAPES,
    Cluster,
    Line,
    forecast,
    main,
    model,
)


def _spark_or_skip() -> None:
    problem = None
    try:
        import pyspark  # noqa: F401
    except ImportError:
        problem = "the spark extra is not installed (pip install -e '.[spark]')"
    if problem is None and shutil.which("java") is None:
        problem = "Java is not installed"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.mark.spark
def test_the_bench_runs_every_shape_on_both_engines(tmp_path: Path) -> None:
    _spark_or_skip()
    main(["--sizes", "2000", "--runs", "1", "--dir", str(tmp_path)])
    saved = json.loads((tmp_path / "spark_scale.json").read_text())
    at = saved["sizes"]["2000"]
    assert set(at["results"]) == set(SHAPES)
    for shape, by in at["results"].items():
        # The same compiled question on the same data: the same cohort on both engines.
        assert by["spark"]["cohort"] == by["duckdb"]["cohort"] > 0, shape
        for engine in ("duckdb", "spark"):
            assert by[engine]["statement_s"] > 0
            assert by[engine]["question_s"] > 0
        read = at["reads"][shape]
        assert read["rows"]["person"] == at["rows"]["person"]  # every shape reads everyone
        assert read["pruned_bytes"]["person"] > 0
    assert "condition_occurrence" in at["reads"]["condition, age band x sex"]["rows"]
    assert "condition_occurrence" not in at["reads"]["count by sex"]["rows"]


def test_the_line_separates_the_fixed_cost_from_the_rows() -> None:
    line = Line.fit([(x, 3.0 + 2e-6 * x) for x in (1e6, 3e6, 1e7)])
    assert line.fixed_s == pytest.approx(3.0)
    assert line.per_row_s == pytest.approx(2e-6)


def test_the_forecast_adds_up_where_the_time_goes() -> None:
    cluster = Cluster(cores=4, job_s=1.0, task_s=0.1, split_bytes=100, network_bytes_s=10.0)
    f = forecast(
        rows=3200,
        pruned_bytes=1000,
        cohort=50,
        fixed_s=2.0,
        per_core_row_s=0.01,
        executors=8,
        cluster=cluster,
    )
    assert f.fixed_s == pytest.approx(3.0)
    assert f.scan_s == pytest.approx(3200 * 0.01 / 32)
    assert f.tasks_s == pytest.approx(0.1)  # 10 tasks, one wave on 32 cores
    assert f.shuffle_s == pytest.approx(1000 * 3.0 / (8 * 10.0))
    assert f.total_s == pytest.approx(
        f.fixed_s + f.scan_s + f.tasks_s + f.shuffle_s + f.to_python_s
    )


def test_the_model_scales_events_and_persons_to_the_hub() -> None:
    """Two sizes whose times are exactly a line: the hub's forecast scales the event tables
    to 1.2 billion events and the person tables to 67 million persons."""

    def at(persons: int) -> dict[str, Any]:
        rows = {"person": persons, "condition_occurrence": 4 * persons, "concept": 100}
        read = {"rows": rows, "pruned_bytes": {t: 8 * n for t, n in rows.items()}}
        seconds = 2.0 + 1e-6 * sum(rows.values())
        timing = {"statement_s": seconds, "question_s": seconds, "cohort": persons // 10}
        return {
            "rows": rows,
            "reads": {shape: read for shape in SHAPES},
            "results": {shape: {"duckdb": timing, "spark": timing} for shape in SHAPES},
        }

    saved = {"sizes": {"1000000": at(1_000_000), "3000000": at(3_000_000)}}
    table = model(saved)
    assert len(table) == 2 + len(SHAPES)
    hub_rows = HUB_PERSONS + HUB_EVENTS + 100
    assert f"| {hub_rows / 1e6:,.0f} M |" in table[2]
    assert table[0].count("N = ") == len(EXECUTORS)
