"""The second round's table: each row's figures found by name in a results file, shown beside
the earlier run's, and judged against its goal only when all of them were measured."""

from __future__ import annotations

from bench.against import ROWS, figures, render


def _results(values: dict[str, float]) -> dict[str, object]:
    return {"figures": [{"name": f"  {k}", "value": v} for k, v in values.items()]}


def test_figures_are_found_by_their_stripped_names_first_one_standing() -> None:
    found = figures(
        {
            "figures": [
                {"name": "  gateway / baseline rate held", "value": 0.1},
                {"name": "  gateway / baseline rate held", "value": 0.2},
                {"name": "10M persons, projected", "value": "nan"},
            ]
        }
    )
    assert found == {"gateway / baseline rate held": 0.1}


def test_rows_are_judged_against_their_goals() -> None:
    now = {name: 1.0 for row in ROWS for name in row.figures}
    now["highest rate held, cohort count"] = 500.0
    now["highest rate held, cohort with a 20-cell breakdown"] = 399.0
    now["overhead median, 30 nodes, c=1"] = 8.5
    lines = render({}, now).splitlines()
    verdicts = {lines[i]: lines[i + 1].split()[-1] for i in range(2, len(lines), 2)}
    rate = next(v for k, v in verdicts.items() if k.startswith("highest rate held"))
    overhead = next(v for k, v in verdicts.items() if k.startswith("fan-out overhead"))
    rss = next(v for k, v in verdicts.items() if k.startswith("gateway peak RSS"))
    assert (rate, overhead, rss) == ("MISSED", "MISSED", "MET")


def test_a_row_not_measured_in_full_shows_dashes_and_no_verdict() -> None:
    text = render(
        figures(_results({"gateway CPU, cohort, 5 nodes": 7.0})),
        figures(_results({"gateway CPU, cohort, 5 nodes": 3.0})),
    )
    lines = text.splitlines()
    row = lines.index(next(line for line in lines if line.startswith("gateway CPU per query")))
    shown = lines[row + 1].split()
    assert shown[:5] == ["7", "/", "–", "/", "–"]
    assert shown[-1] == "ms"
