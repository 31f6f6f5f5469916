"""A gateway's answer, read: the pooled count, every node's part, and each breakdown as tidy
rows, one per cell of the table's full grid.

A breakdown lists every cell of its public domain at every node that answered; a table by
`JURISDICTION` has no cells for a node that did not answer (denied, timed out), so the rows
complete the grid: every jurisdiction asked times every value of the other dimensions, the
missing ones with no value and no status, and the node's status and reasons saying why.

Each row holds the dimensions (`jurisdiction`: a country, or `POOLED` for a number pooled
across the countries that answered; `sex`; `age_band` with its numeric `age_min` and
`age_max`; `calendar_year` as a number, empty for persons without one) and the number as
released: `value` (None when withheld), `sd`, `status`, `bound`, `reasons` (`;`-separated,
`FR:BELOW_MINIMUM` for a country's rule), `contributors` of a securely pooled count, and
`node_status` for a country's rows. Rows are ordered as numbers order: `5-9` before `10-14`.
No number is ever made up: a cell the gateway did not release has no value.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from schema.codes import Dimension, Jurisdiction, Sex
from schema.dimensions import DIMENSIONS, UNKNOWN_KEY
from tessera.client.columns import cells_of_table

POOLED: Final = "POOLED"
TOTAL_TABLE: Final = "count"
NODES_TABLE: Final = "byJurisdiction"

# Every column a row may have, in the order frames and CSV files list them.
DIMENSION_COLUMNS: Final = (
    "jurisdiction",
    "sex",
    "age_band",
    "age_min",
    "age_max",
    "calendar_year",
)
MEASURE_COLUMNS: Final = (
    "value",
    "sd",
    "status",
    "bound",
    "reasons",
    "contributors",
    "node_status",
)
COLUMNS: Final = ("cohort", "table", *DIMENSION_COLUMNS, *MEASURE_COLUMNS)

Row = dict[str, Any]

_JURISDICTION_ORDER: Final = {j.value: i for i, j in enumerate(Jurisdiction)}
_SEX_ORDER: Final = {Sex.FEMALE.value: 0, Sex.MALE.value: 1, UNKNOWN_KEY: 2}
_AGE_BANDS: Final = frozenset(d.value for d, spec in DIMENSIONS.items() if spec.age_band_width)
_BAND: Final = re.compile(r"^([0-9]+)(?:-([0-9]+)|\+)$")


@dataclass(frozen=True, slots=True)
class Reason:
    rule: str
    jurisdiction: str | None = None
    message: str = ""

    def __str__(self) -> str:
        return f"{self.jurisdiction}:{self.rule}" if self.jurisdiction else self.rule


@dataclass(frozen=True, slots=True)
class Count:
    """A released count: `value` is None exactly when withheld (`LOW`, `SUPPRESSED`)."""

    value: int | None
    status: str | None
    sd: float | None = None
    bound: float | None = None
    reasons: tuple[Reason, ...] = ()
    contributors: tuple[str, ...] | None = None

    @classmethod
    def read(cls, raw: Mapping[str, Any] | None) -> Count | None:
        if raw is None:
            return None
        contributors = raw.get("contributors")
        return cls(
            value=raw.get("value"),
            status=raw.get("status"),
            sd=raw.get("sd"),
            bound=raw.get("bound"),
            reasons=_reasons(raw.get("reasons")),
            contributors=None if contributors is None else tuple(contributors),
        )

    def measures(self) -> Row:
        return {
            "value": self.value,
            "sd": self.sd,
            "status": self.status,
            "bound": self.bound,
            "reasons": ";".join(map(str, self.reasons)) or None,
            "contributors": ",".join(self.contributors) if self.contributors else None,
        }


def _reasons(raw: Iterable[Mapping[str, Any]] | None) -> tuple[Reason, ...]:
    return tuple(
        Reason(str(r.get("rule", "")), r.get("jurisdiction"), str(r.get("message") or ""))
        for r in raw or ()
    )


@dataclass(frozen=True, slots=True)
class Node:
    """One country's part: its node's status (`OK`, `DENIED`, `TIMEOUT`, …), latency, its own
    count (None unless OK), why, and what the answer cost there."""

    jurisdiction: str
    status: str | None
    latency_ms: float | None = None
    count: Count | None = None
    reasons: tuple[Reason, ...] = ()
    error: str | None = None
    privacy: Mapping[str, Any] | None = None

    @classmethod
    def read(cls, raw: Mapping[str, Any]) -> Node:
        return cls(
            jurisdiction=str(raw.get("jurisdiction")),
            status=raw.get("status"),
            latency_ms=raw.get("latencyMs"),
            count=Count.read(raw.get("count")),
            reasons=_reasons(raw.get("reasons")),
            error=raw.get("error"),
            privacy=raw.get("privacy"),
        )

    def why(self) -> str | None:
        """The node's own reasons, or its error, when it did not answer."""
        text = ";".join(
            str(r) if r.jurisdiction else f"{self.jurisdiction}:{r.rule}" for r in self.reasons
        )
        return text or self.error


@dataclass(frozen=True, slots=True)
class Table:
    """One breakdown: its dimensions and its tidy rows (the full grid)."""

    by: tuple[str, ...]
    rows: tuple[Row, ...]

    @property
    def name(self) -> str:
        return ",".join(self.by)


@dataclass
class Answer:
    """The answer to one `cohort` question (one field of a GraphQL response).

    `count` is the pooled count (None when not selected), `nodes` every country's part,
    `tables` each breakdown by its alias. `rows()` gives every number as tidy rows,
    `frame()` the same as a pandas DataFrame (`pip install 'tessera[client]'`)."""

    name: str
    raw: Mapping[str, Any]
    query_id: str | None = None
    trace_id: str | None = None
    reference_date: str | None = None
    age_at: str | None = None  # when ages were taken: INDEX_EVENT or REFERENCE_DATE
    count: Count | None = None
    nodes: list[Node] = field(default_factory=list)
    tables: dict[str, Table] = field(default_factory=dict)

    @classmethod
    def read(cls, name: str, raw: Mapping[str, Any]) -> Answer:
        nodes = [Node.read(n) for n in raw.get("byJurisdiction") or ()]
        answer = cls(
            name=name,
            raw=raw,
            query_id=raw.get("queryId"),
            trace_id=raw.get("traceId"),
            reference_date=raw.get("referenceDate"),
            age_at=raw.get("ageAt"),
            count=Count.read(raw.get("count")),
            nodes=nodes,
        )
        for key, value in raw.items():
            if isinstance(value, Mapping) and cells_of_table(value) is not None:
                answer.tables[key] = read_table(value, nodes)
        return answer

    def node(self, jurisdiction: str) -> Node | None:
        return next((n for n in self.nodes if n.jurisdiction == jurisdiction), None)

    def table(self, which: str | Sequence[str] | None = None) -> Table:
        """A breakdown by alias (`b0`), by its dimensions (`"SEX,AGE_BAND_10"` or a list), or
        the only one."""
        if which is None:
            if len(self.tables) != 1:
                raise KeyError(f"{len(self.tables)} breakdowns: say which ({list(self.tables)})")
            return next(iter(self.tables.values()))
        if isinstance(which, str) and which in self.tables:
            return self.tables[which]
        wanted = which if isinstance(which, str) else ",".join(which)
        wanted = ",".join(d.strip().upper() for d in wanted.split(","))
        for table in self.tables.values():
            if table.name == wanted:
                return table
        raise KeyError(f"no breakdown {wanted} (have {[t.name for t in self.tables.values()]})")

    def total_rows(self) -> list[Row]:
        if self.count is None:
            return []
        return [{"jurisdiction": POOLED, **self.count.measures()}]

    def node_rows(self) -> list[Row]:
        rows = []
        for node in self.nodes:
            measures = (
                node.count.measures()
                if node.count is not None
                else {**_EMPTY_MEASURES, "reasons": node.why()}
            )
            rows.append({"jurisdiction": node.jurisdiction, **measures, "node_status": node.status})
        return rows

    def rows(self, which: str | Sequence[str] | None = None) -> list[Row]:
        """Tidy rows of one breakdown: `which` (alias or dimensions), or the only one asked.
        Without breakdowns, or with several and no `which`: every number (`all_rows`)."""
        if which is not None or len(self.tables) == 1:
            return [dict(row) for row in self.table(which).rows]
        return self.all_rows()

    def all_rows(self) -> list[Row]:
        """Every number of the answer, each row naming its `table`: `count` (the pooled
        count), `byJurisdiction` (each country's own count and its node's status), then each
        breakdown by its dimensions (`SEX,AGE_BAND_10`)."""
        stacked = [{"table": TOTAL_TABLE, **row} for row in self.total_rows()]
        stacked += [{"table": NODES_TABLE, **row} for row in self.node_rows()]
        for table in self.tables.values():
            stacked += [{"table": table.name, **row} for row in table.rows]
        return stacked

    def summary_rows(self, which: str | Sequence[str] | None = None) -> list[Row]:
        """The variable's summary as tidy rows, one per number: pooled and per country
        (`jurisdiction`), or per cell of a breakdown (`which`), each with its `statistic`
        (n, mean, variance, sd, ci_low, ci_high), `value`, `sd` (its noise), `status`,
        `bound` and `reasons`."""
        if which is None:
            rows = _summary_rows({"jurisdiction": POOLED}, self.raw.get("summary"))
            for node in self.raw.get("byJurisdiction") or ():
                where = {"jurisdiction": str(node.get("jurisdiction"))}
                rows += _summary_rows(where, node.get("summary"))
            return rows
        raw = self._raw_table(which)
        pooled = Dimension.JURISDICTION.value not in (raw.get("by") or ())
        rows = []
        for cell in cells_of_table(raw) or ():
            where = _cell_columns(cell, pooled)
            rows += _summary_rows(where, cell.get("summary"))
        return rows

    def summary_frame(self, which: str | Sequence[str] | None = None) -> Any:
        """`summary_rows(which)` as a DataFrame (`value` a float)."""
        from tessera.client.frames import statistics_frame

        return statistics_frame(self.summary_rows(which))

    def rate_rows(self, which: str | Sequence[str] | None = None) -> list[Row]:
        """The incidence rate as tidy rows, one per number: pooled and per country
        (`jurisdiction`), or per cell of a breakdown (`which`), each with its `statistic`
        (events, person_years, rate, ci_low, ci_high), `value`, `sd` (its noise), `status`,
        `bound`, `reasons` and `per` (the person-years the rate is given per)."""
        if which is None:
            rows = _rate_rows({"jurisdiction": POOLED}, self.raw.get("rate"))
            for node in self.raw.get("byJurisdiction") or ():
                where = {"jurisdiction": str(node.get("jurisdiction"))}
                rows += _rate_rows(where, node.get("rate"))
            return rows
        raw = self._raw_table(which)
        pooled = Dimension.JURISDICTION.value not in (raw.get("by") or ())
        rows = []
        for cell in cells_of_table(raw) or ():
            rows += _rate_rows(_cell_columns(cell, pooled), cell.get("rate"))
        return rows

    def rate_frame(self, which: str | Sequence[str] | None = None) -> Any:
        """`rate_rows(which)` as a DataFrame (`value` a float)."""
        from tessera.client.frames import statistics_frame

        return statistics_frame(self.rate_rows(which))

    def quantile_rows(self, which: str | Sequence[str] | None = None) -> list[Row]:
        """The quartiles of a histogram (a breakdown by VALUE_BIN; the only one when `which`
        is None), one row per group and `statistic` (q1, median, q3, iqr)."""
        raw = self._raw_table(which)
        pooled = Dimension.JURISDICTION.value not in (raw.get("by") or ())
        rows = []
        for group in raw.get("quantiles") or ():
            where = _cell_columns(group, pooled)
            for statistic in ("q1", "median", "q3", "iqr"):
                rows.append({**where, "statistic": statistic, **_estimate(group.get(statistic))})
        return rows

    def quantiles_frame(self, which: str | Sequence[str] | None = None) -> Any:
        """`quantile_rows(which)` as a DataFrame (`value` a float)."""
        from tessera.client.frames import statistics_frame

        return statistics_frame(self.quantile_rows(which))

    def survival_rows(self) -> list[Row]:
        """A survival question's curves, one row per curve and interval
        (`tessera.client.survival`)."""
        from tessera.client.survival import survival_rows

        return survival_rows(self.raw.get("survival"))

    def survival_frame(self) -> Any:
        """`survival_rows()` as a DataFrame (every number a float, a withheld one NaN)."""
        from tessera.client.survival import rows_frame

        return rows_frame(self.survival_rows())

    def log_rank_frame(self) -> Any:
        """A survival question's log-rank tests, one row per test, as a DataFrame."""
        from tessera.client.survival import log_rank_rows, rows_frame

        return rows_frame(log_rank_rows(self.raw.get("survival")))

    def _raw_table(self, which: str | Sequence[str] | None) -> Mapping[str, Any]:
        table = self.table(which)
        for value in self.raw.values():
            is_table = isinstance(value, Mapping) and cells_of_table(value) is not None
            if is_table and ",".join(str(d) for d in value.get("by") or ()) == table.name:
                found: Mapping[str, Any] = value
                return found
        raise KeyError(f"no breakdown {table.name}")

    def frame(self, which: str | Sequence[str] | None = None) -> Any:
        """`rows(which)` as a pandas DataFrame with typed columns (nullable integers, age
        bands ordered as numbers); see `tessera.client.frames`.

            >>> answer.frame()  # doctest: +SKIP
              jurisdiction     sex age_band  age_min  age_max  value   sd     status ...
            0       POOLED  FEMALE      0-9        0        9   <NA>  5.0        LOW ...
        """
        from tessera.client.frames import to_frame

        return to_frame(self.rows(which))

    def all_frame(self) -> Any:
        """`all_rows()` as a DataFrame."""
        from tessera.client.frames import to_frame

        return to_frame(self.all_rows())

    def nodes_frame(self) -> Any:
        """One row per country: node status, latency, count and privacy spend."""
        from tessera.client.frames import nodes_frame

        return nodes_frame(self.nodes)

    def to_csv(self, path: str | Path, which: str | Sequence[str] | None = None) -> Path:
        """`frame(which)` as CSV (`tessera.client.read_csv` reads it back, typed)."""
        from tessera.client.frames import write

        return write(self.frame(which), path, "csv")

    def to_parquet(self, path: str | Path, which: str | Sequence[str] | None = None) -> Path:
        """`frame(which)` as Parquet (needs pyarrow, in the `client` extra)."""
        from tessera.client.frames import write

        return write(self.frame(which), path, "parquet")


_EMPTY_MEASURES: Final[Row] = {
    "value": None,
    "sd": None,
    "status": None,
    "bound": None,
    "reasons": None,
    "contributors": None,
}


_STATISTICS: Final = (
    ("n", "n"),
    ("mean", "mean"),
    ("variance", "variance"),
    ("sd", "sd"),
    ("ci_low", "ciLow"),
    ("ci_high", "ciHigh"),
)


def _estimate(raw: Mapping[str, Any] | None) -> Row:
    raw = raw or {}
    return {
        "value": raw.get("value"),
        "sd": raw.get("sd"),
        "status": raw.get("status"),
        "bound": raw.get("bound"),
        "reasons": ";".join(map(str, _reasons(raw.get("reasons")))) or None,
    }


def _summary_rows(where: Row, raw: Mapping[str, Any] | None) -> list[Row]:
    if raw is None:
        return []
    return [
        {**where, "statistic": name, **_estimate(raw.get(field))} for name, field in _STATISTICS
    ]


_RATE: Final = (
    ("events", "events"),
    ("person_years", "personYears"),
    ("rate", "rate"),
    ("ci_low", "ciLow"),
    ("ci_high", "ciHigh"),
)


def _rate_rows(where: Row, raw: Mapping[str, Any] | None) -> list[Row]:
    if raw is None:
        return []
    per = raw.get("per")
    return [
        {**where, "statistic": name, **_estimate(raw.get(field)), "per": per}
        for name, field in _RATE
    ]


def _cell_columns(cell: Mapping[str, Any], pooled: bool) -> Row:
    row: Row = {"jurisdiction": POOLED} if pooled else {}
    for d in cell.get("dimensions") or ():
        row.update(dimension_columns(str(d["name"]), str(d["value"])))
    return row


def age_bounds(label: str) -> tuple[int | None, int | None]:
    """`"40-49"` → (40, 49); `"90+"` → (90, None); anything else (None, None)."""
    match = _BAND.match(label)
    if match is None:
        return None, None
    high = match.group(2)
    return int(match.group(1)), None if high is None else int(high)


def _order(dimension: str, value: str) -> tuple[int, int, str]:
    if value == UNKNOWN_KEY:
        return (2, 0, value)
    if dimension == Dimension.JURISDICTION:
        return (0, _JURISDICTION_ORDER.get(value, len(_JURISDICTION_ORDER)), value)
    if dimension == Dimension.SEX:
        return (0, _SEX_ORDER.get(value, len(_SEX_ORDER)), value)
    if dimension == Dimension.VALUE_BIN:
        # Lower edges in tenths at most ("6.5"): ordered as numbers.
        return (0, round(float(value) * 10), value)
    low, _ = age_bounds(value)
    if low is not None:
        return (0, low, value)
    if value.isascii() and value.isdigit():
        return (0, int(value), value)
    return (1, 0, value)


def dimension_columns(dimension: str, value: str) -> Row:
    """The tidy columns of one dimension's value."""
    if dimension == Dimension.JURISDICTION:
        return {"jurisdiction": value}
    if dimension == Dimension.SEX:
        return {"sex": value}
    if dimension in _AGE_BANDS:
        low, high = age_bounds(value)
        return {"age_band": value, "age_min": low, "age_max": high}
    if dimension == Dimension.CALENDAR_YEAR:
        return {"calendar_year": int(value) if value.isascii() and value.isdigit() else None}
    if dimension == Dimension.VALUE_BIN:
        # A bin by its lower edge (in the variable's unit), UNKNOWN without a value.
        edge = None if value == UNKNOWN_KEY else float(value)
        return {"value_bin": value, "bin_low": edge}
    return {dimension.lower(): value}  # a dimension newer than this client


def read_table(raw: Mapping[str, Any], nodes: Sequence[Node]) -> Table:
    """A breakdown's cells (or its columns) as the rows of its full grid, in numeric order."""
    cells = cells_of_table(raw) or []
    by = tuple(str(d) for d in raw.get("by") or ())
    if not by and cells:
        by = tuple(str(d["name"]) for d in cells[0]["dimensions"])
    released: dict[tuple[str, ...], Count | None] = {}
    seen: list[dict[str, None]] = [{} for _ in by]
    for cell in cells:
        values = {str(d["name"]): str(d["value"]) for d in cell["dimensions"]}
        key = tuple(values.get(d, "") for d in by)
        released[key] = Count.read(cell.get("count"))
        for i, value in enumerate(key):
            seen[i][value] = None
    if not by:
        return Table((), ())  # no cells, and no dimensions to make a grid of
    by_node = {n.jurisdiction: n for n in nodes}
    axes = []
    for dimension, found in zip(by, seen, strict=True):
        domain = list(found)
        if dimension == Dimension.JURISDICTION:
            domain += [j for j in by_node if j not in found]
        axes.append(sorted(domain, key=functools.partial(_order, dimension)))
    pooled = Dimension.JURISDICTION.value not in by
    rows: list[Row] = []
    for key in itertools.product(*axes):
        row: Row = {"jurisdiction": POOLED} if pooled else {}
        for dimension, value in zip(by, key, strict=True):
            row.update(dimension_columns(dimension, value))
        count = released.get(key)
        node = None if pooled else by_node.get(row["jurisdiction"])
        if count is not None:
            row.update(count.measures())
        else:
            row.update(_EMPTY_MEASURES)
            row["reasons"] = node.why() if node is not None else None
        if not pooled:
            row["node_status"] = node.status if node is not None else None
        rows.append(row)
    return Table(by, tuple(rows))


@dataclass
class Response:
    """A whole GraphQL response: `data` as sent, and an `Answer` per `cohort` field in it."""

    data: Mapping[str, Any]
    answers: dict[str, Answer] = field(default_factory=dict)
    elapsed_ms: float | None = None

    @classmethod
    def read(cls, data: Mapping[str, Any], *, elapsed_ms: float | None = None) -> Response:
        answers = {
            name: Answer.read(name, value)
            for name, value in data.items()
            if isinstance(value, Mapping) and _is_cohort(value)
        }
        return cls(data=data, answers=answers, elapsed_ms=elapsed_ms)

    @property
    def answer(self) -> Answer:
        """The only cohort answer of the response."""
        if len(self.answers) != 1:
            raise KeyError(f"{len(self.answers)} cohort answers: pick one of .answers")
        return next(iter(self.answers.values()))

    def rows(self) -> list[Row]:
        """Every number of every cohort answer, each row naming its `cohort` (the field's
        alias) and `table`."""
        return [
            {"cohort": name, **row}
            for name, answer in self.answers.items()
            for row in answer.all_rows()
        ]

    def frame(self) -> Any:
        from tessera.client.frames import to_frame

        return to_frame(self.rows())

    def to_csv(self, path: str | Path) -> Path:
        from tessera.client.frames import write

        return write(self.frame(), path, "csv")

    def to_parquet(self, path: str | Path) -> Path:
        from tessera.client.frames import write

        return write(self.frame(), path, "parquet")

    def __iter__(self) -> Iterator[Answer]:
        return iter(self.answers.values())


_COHORT_KEYS: Final = frozenset({"queryId", "traceId", "count", "byJurisdiction"})


def _is_cohort(value: Mapping[str, Any]) -> bool:
    if "coefficients" in value:  # a regression's (`tessera.client.regression`)
        return False
    return bool(_COHORT_KEYS & value.keys()) or any(
        isinstance(v, Mapping) and cells_of_table(v) is not None for v in value.values()
    )
