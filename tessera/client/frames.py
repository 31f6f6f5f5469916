"""Tidy rows as pandas DataFrames, and back from CSV.

pandas (and pyarrow for Parquet) come with the `client` extra: `pip install
'tessera[client]'`. Columns are typed so that a frame sorts and groups as the numbers mean:
`value`, `age_min`, `age_max` and `calendar_year` are nullable integers (a withheld count is
`<NA>`, never 0), `age_band` an ordered categorical in numeric order (`5-9` < `10-14`),
`sd` and `bound` floats, the rest strings.

    >>> frame = to_frame([{"jurisdiction": "POOLED", "age_band": "10-19", "age_min": 10,
    ...                    "age_max": 19, "value": 12, "status": "PERTURBED", "sd": 5.0}])
    >>> str(frame["value"].dtype), list(frame["age_band"].cat.categories)
    ('Int64', ['10-19'])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tessera.client.answer import COLUMNS, DIMENSION_COLUMNS, MEASURE_COLUMNS, Node, Row

if TYPE_CHECKING:
    import pandas as pd

INTEGER_COLUMNS: Final = frozenset({"value", "age_min", "age_max", "calendar_year", "per"})
FLOAT_COLUMNS: Final = frozenset(
    {"sd", "bound", "latency_ms", "sigma", "question_rho", "spent_rho", "cap_rho", "bin_low"}
)
NODE_COLUMNS: Final = (
    "jurisdiction",
    "node_status",
    "latency_ms",
    "value",
    "sd",
    "status",
    "bound",
    "reasons",
    "error",
    "sigma",
    "question_rho",
    "spent_rho",
    "cap_rho",
    "data_release",
)


def pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(
            "DataFrames need pandas: pip install 'tessera[client]' (rows() needs nothing)"
        ) from None
    return pd


def columns_of(rows: Sequence[Row]) -> list[str]:
    """The columns the rows use, in the canonical order; every measure always."""
    present = {key for row in rows for key in row}
    return [c for c in COLUMNS if c in present or c in MEASURE_COLUMNS] + sorted(
        present - set(COLUMNS)
    )


def to_frame(rows: Sequence[Row]) -> pd.DataFrame:
    pd = pandas()
    columns = columns_of(rows)
    frame = pd.DataFrame([[row.get(c) for c in columns] for row in rows], columns=columns)
    return typed(frame)


def statistics_frame(rows: Sequence[Row]) -> pd.DataFrame:
    """Rows of estimates (a summary's, quartiles: one per `statistic`) as a frame: their
    `value` is a float, n's included."""
    pd = pandas()
    columns = columns_of(rows)
    frame = pd.DataFrame([[row.get(c) for c in columns] for row in rows], columns=columns)
    return typed(frame, floats=frozenset({"value"}))


def typed(frame: pd.DataFrame, floats: frozenset[str] = frozenset()) -> pd.DataFrame:
    """The frame with the tidy columns' dtypes (after `to_frame`, or as read from CSV)."""
    pd = pandas()
    for column in frame.columns:
        if column in floats:
            frame[column] = frame[column].astype("float64")
        elif column in INTEGER_COLUMNS:
            frame[column] = frame[column].astype("Int64")
        elif column in FLOAT_COLUMNS:
            frame[column] = frame[column].astype("float64")
        elif column != "age_band":
            frame[column] = frame[column].astype("string")
    if "age_band" in frame.columns:
        bands = frame[["age_band", "age_min"]].dropna(subset=["age_band"]).drop_duplicates()
        order = bands.sort_values("age_min", kind="stable")["age_band"].astype(str).tolist()
        frame["age_band"] = pd.Categorical(
            frame["age_band"].astype("string"), categories=order, ordered=True
        )
    return frame


def nodes_frame(nodes: Iterable[Node]) -> pd.DataFrame:
    pd = pandas()
    records = []
    for node in nodes:
        privacy = node.privacy or {}
        count = node.count.measures() if node.count is not None else {}
        records.append(
            {
                "jurisdiction": node.jurisdiction,
                "node_status": node.status,
                "latency_ms": node.latency_ms,
                **{k: count.get(k) for k in ("value", "sd", "status", "bound")},
                "reasons": count.get("reasons") or node.why(),
                "error": node.error,
                "sigma": privacy.get("sigma"),
                "question_rho": privacy.get("questionRho"),
                "spent_rho": privacy.get("spentRho"),
                "cap_rho": privacy.get("capRho"),
                "data_release": privacy.get("dataRelease"),
            }
        )
    return typed(pd.DataFrame(records, columns=list(NODE_COLUMNS)))


def read_csv(path: str | Path) -> pd.DataFrame:
    """A CSV written by `Answer.to_csv` or `tessera query --csv`, with its dtypes back."""
    pd = pandas()
    text_columns = {
        c: "string"
        for c in (*COLUMNS, *NODE_COLUMNS)
        if c not in INTEGER_COLUMNS and c not in FLOAT_COLUMNS
    }
    frame = pd.read_csv(path, dtype=text_columns, keep_default_na=False, na_values=[""])
    return typed(frame)


def write(frame: pd.DataFrame, path: str | Path, kind: str | None = None) -> Path:
    """`frame` to `path` as `kind` (`csv` or `parquet`; by default from the file's suffix:
    Parquet for `.parquet`, which needs pyarrow, CSV otherwise)."""
    target = Path(path)
    if (kind or ("parquet" if target.suffix == ".parquet" else "csv")) == "parquet":
        frame.to_parquet(target, index=False)
    else:
        frame.to_csv(target, index=False)
    return target


__all__ = [
    "DIMENSION_COLUMNS",
    "nodes_frame",
    "read_csv",
    "to_frame",
    "typed",
    "write",
]
