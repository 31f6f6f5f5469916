"""Survival questions in the client: the `survival` argument, the curves as tidy rows and
DataFrames, and a plot of a curve with its 95% band (matplotlib, in the `client` extra).

    answer = client.cohort(index=index([event("CONDITION", ["ICD10:E11"])]),
                           survival=survival(event("DEATH"), interval_days=365,
                                             max_days=3650, group_by="SEX"))
    answer.survival_frame()     # one row per curve and interval
    answer.log_rank_frame()     # one row per test
    plot_survival(answer.survival_frame(), group="sex")

Each row names its curve (`jurisdiction`: a country or POOLED; the group's dimension
columns, e.g. `sex`, empty for the whole cohort), the interval (`start`, `end` in days from
the index date), the numbers at risk at its start, events and censorings in it (withheld:
None), the survival at its end with `ci_low`, `ci_high`, its noise's `sd`, `bound` (how far
withheld exits taken at half the minimum could move it), `status` and `reasons`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from schema.codes import Dimension
from tessera.client.answer import POOLED, Row, dimension_columns

if TYPE_CHECKING:
    import pandas as pd

_ESTIMATE: Final = "value status sd bound reasons { rule jurisdiction message }"
SURVIVAL_FIELDS: Final = (
    "survival { curves { jurisdiction dimensions { name value } steps { start end "
    f"atRisk {{ {_ESTIMATE} }} events {{ {_ESTIMATE} }} censored {{ {_ESTIMATE} }} "
    f"survival {{ {_ESTIMATE} }} ciLow {{ {_ESTIMATE} }} ciHigh {{ {_ESTIMATE} }} }} }} "
    "logRank { jurisdiction dimension groups degreesOfFreedom "
    f"statistic {{ {_ESTIMATE} }} pValue {{ {_ESTIMATE} }} }} }}"
)


def survival(
    outcome: Mapping[str, Any],
    *,
    interval_days: int,
    max_days: int,
    group_by: str | Dimension | None = None,
    by_country: bool = True,
) -> dict[str, Any]:
    """A `SurvivalInput`: follow-up from the index date to `outcome` (`event("DEATH")`,
    `event("CONDITION", ["ICD10:I50"])`) in intervals of `interval_days` (7, 30, 90 or
    365) up to `max_days`, one curve per group of `group_by` (SEX, an age band) with the
    log-rank test between them. `by_country=False`: the pooled curves only, their exits pooled
    securely across the countries (a rare cohort's, whose exits are below every country's
    minimum)."""
    data: dict[str, Any] = {
        "outcome": dict(outcome),
        "intervalDays": interval_days,
        "maxDays": max_days,
    }
    if not by_country:
        data["byCountry"] = False
    if group_by is not None:
        data["groupBy"] = Dimension(str(group_by).upper()).value
    return data


def survival_rows(raw: Mapping[str, Any] | None) -> list[Row]:
    """A `survival` answer's curves as tidy rows, one per curve and interval."""
    rows: list[Row] = []
    for curve in (raw or {}).get("curves") or ():
        where: Row = {"jurisdiction": curve.get("jurisdiction") or POOLED}
        for dimension in curve.get("dimensions") or ():
            where |= dimension_columns(str(dimension["name"]), str(dimension["value"]))
        for step in curve.get("steps") or ():
            estimate = step.get("survival") or {}
            rows.append(
                {
                    **where,
                    "start": step.get("start"),
                    "end": step.get("end"),
                    "at_risk": _value(step.get("atRisk")),
                    "events": _value(step.get("events")),
                    "censored": _value(step.get("censored")),
                    "survival": estimate.get("value"),
                    "ci_low": _value(step.get("ciLow")),
                    "ci_high": _value(step.get("ciHigh")),
                    "sd": estimate.get("sd"),
                    "bound": estimate.get("bound"),
                    "status": estimate.get("status"),
                    "reasons": _reasons(estimate.get("reasons")),
                }
            )
    return rows


def log_rank_rows(raw: Mapping[str, Any] | None) -> list[Row]:
    """A `survival` answer's log-rank tests, one row per test."""
    return [
        {
            "jurisdiction": test.get("jurisdiction") or POOLED,
            "dimension": test.get("dimension"),
            "groups": ";".join(test.get("groups") or ()),
            "statistic": _value(test.get("statistic")),
            "degrees_of_freedom": test.get("degreesOfFreedom"),
            "p_value": _value(test.get("pValue")),
            "status": (test.get("statistic") or {}).get("status"),
        }
        for test in (raw or {}).get("logRank") or ()
    ]


def rows_frame(rows: Sequence[Row]) -> pd.DataFrame:
    """Rows as a DataFrame, every number a float (a withheld one NaN)."""
    from tessera.client.frames import pandas

    pd = pandas()
    columns = list(dict.fromkeys(c for row in rows for c in row))
    frame = pd.DataFrame([[row.get(c) for c in columns] for row in rows], columns=columns)
    for column in columns:
        if column in _NUMBERS:
            frame[column] = frame[column].astype("float64")
        elif column not in ("start", "end", "degrees_of_freedom", "age_min", "age_max"):
            frame[column] = frame[column].astype("string")
    return frame


def plot_survival(
    frame: pd.DataFrame,
    *,
    jurisdiction: str = POOLED,
    group: str | None = None,
    ax: Any = None,
) -> Any:
    """Plot the curves of one `jurisdiction` (POOLED by default) as steps from S(0) = 1, each
    with its 95% band shaded; one curve per value of the column `group` (e.g. "sex"), or the
    whole cohort's. Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    chosen = frame[frame["jurisdiction"] == jurisdiction]
    if group is None:
        dimensions = [c for c in ("sex", "age_band") if c in chosen.columns]
        for column in dimensions:
            chosen = chosen[chosen[column].isna()]
        parts: Iterable[tuple[str, pd.DataFrame]] = [("all", chosen)]
    else:
        chosen = chosen[chosen[group].notna()]
        parts = [(str(name), part) for name, part in chosen.groupby(group, sort=True)]
    for name, part in parts:
        part = part.sort_values("start")
        days = [0.0, *part["end"].astype(float)]
        values = [1.0, *part["survival"]]
        lows = [1.0, *part["ci_low"]]
        highs = [1.0, *part["ci_high"]]
        (line,) = ax.step(days, values, where="post", label=name)
        ax.fill_between(days, lows, highs, step="post", alpha=0.2, color=line.get_color())
    ax.set_xlabel("days since the index date")
    ax.set_ylabel("survival")
    ax.set_ylim(0, 1.02)
    ax.legend()
    return ax


_NUMBERS: Final = frozenset(
    {
        "at_risk",
        "events",
        "censored",
        "survival",
        "ci_low",
        "ci_high",
        "sd",
        "bound",
        "statistic",
        "p_value",
    }
)


def _value(raw: Mapping[str, Any] | None) -> Any:
    return None if raw is None else raw.get("value")


def _reasons(raw: Iterable[Mapping[str, Any]] | None) -> str:
    return ";".join(
        f"{r['jurisdiction']}:{r['rule']}" if r.get("jurisdiction") else str(r["rule"])
        for r in raw or ()
    )
