"""A breakdown's `columns` against its `cells`, through the public endpoint of a federation of
real processes: every shape of table (pooled, per jurisdiction, with withheld and suppressed
cells, with a variable's summary, with an incidence rate, a histogram) gives row for row the
cells' dimensions, values, statuses, sd, bounds, contributors and reasons, and no withheld
value appears in any column. The Python client, which asks for columns, makes the same frames
as from the cells of the same answer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import pandas as pd
import pytest

from schema.codes import Jurisdiction
from tessera.client import Client, Variable, event, index, outcome
from tessera.client.questions import breakdowns, cohort_question
from tessera.client.questions import criteria as make_criteria
from tessera.credentials import Credentials
from tessera.local import LocalFederation
from tests.integration.federation_kit import post, start_federation

pytestmark = pytest.mark.integration

SUBJECT: Final = "columns@test.tessera.eu"
ORGANISATION: Final = "Columns Test Institute"
WITHHELD: Final = frozenset({"LOW", "SUPPRESSED"})
FR, DE = Jurisdiction.FR, Jurisdiction.DE

REASONS: Final = "reasons { rule jurisdiction message article }"
COUNT: Final = f"value status sd bound contributors {REASONS}"
ESTIMATE: Final = f"value status sd bound {REASONS}"
COUNT_COLUMN: Final = f"{COUNT} reasonIndexes"
ESTIMATE_COLUMN: Final = f"{ESTIMATE} reasonIndexes"
SUMMARY_PARTS: Final = {"n": True, "mean": False, "variance": False, "sd": False}
SUMMARY_PARTS.update({"ciLow": False, "ciHigh": False})
RATE_PARTS: Final = {"events": True, "personYears": False, "rate": False}
RATE_PARTS.update({"ciLow": False, "ciHigh": False})


def _parts(parts: Mapping[str, bool], column: bool) -> str:
    return " ".join(
        f"{p} {{ {(COUNT_COLUMN if column else COUNT) if is_count else (ESTIMATE_COLUMN if column else ESTIMATE)} }}"  # noqa: E501
        for p, is_count in parts.items()
    )


def both(by: str, *, summary: bool = False, rate: bool = False) -> str:
    """A table asked twice in one document: as cells and as columns."""
    extra_cells = extra_columns = ""
    if summary:
        extra_cells += f" summary {{ {_parts(SUMMARY_PARTS, False)} }}"
        extra_columns += f" summary {{ {_parts(SUMMARY_PARTS, True)} }}"
    if rate:
        extra_cells += f" rate {{ per {_parts(RATE_PARTS, False)} }}"
        extra_columns += f" rate {{ per {_parts(RATE_PARTS, True)} }}"
    return (
        f"breakdown(by: [{by}]) {{ by cells {{ dimensions {{ name value }} count {{ {COUNT} }}"
        f"{extra_cells} }} columns {{ rows dimensions {{ name values }} "
        f"count {{ {COUNT_COLUMN} }}{extra_columns} }} }}"
    )


def cohort(arguments: str, tables: Mapping[str, str]) -> str:
    aliased = "\n".join(f"  {alias}: {table}" for alias, table in tables.items())
    return (
        f'{{ cohort(request: "DR-2026-0042", referenceDate: "2026-01-01", {arguments}) {{\n'
        f"  count {{ value status }}\n{aliased}\n}} }}"
    )


DIABETES: Final = 'criteria: { conditions: [{ vocabulary: ICD10, code: "E11" }] }'
HBA1C: Final = (
    'variable: { source: MEASUREMENT, code: "4548-4", perPerson: LAST, '
    'window: { start: "2015-01-01", end: "2025-12-31" }, lo: 4, hi: 14, binWidth: 1 }'
)
VACCINATED: Final = (
    'index: { events: [{ domain: DRUG, codes: [{ vocabulary: ATC, code: "J07BN01" }] }], '
    'window: { start: "2021-01-01" } }, criteria: { age: { max: 79 } }, '
    'outcome: { event: { domain: CONDITION, codes: [{ vocabulary: ICD10, code: "U07.1" }] }, '
    "window: { startDays: 0, endDays: 90 }, per: 1000 }"
)


@pytest.fixture(scope="module")
def researcher(federation: LocalFederation) -> Credentials:
    return federation.credentials(
        federation.permits(subject=SUBJECT, applicant=ORGANISATION), subject=SUBJECT
    )


def ask(federation: LocalFederation, researcher: Credentials, document: str) -> dict[str, Any]:
    status, body = post(federation.gateway_url, {"query": document}, researcher, timeout_s=120)
    assert status == 200, body
    assert "errors" not in body, body
    answer: dict[str, Any] = body["data"]["cohort"]
    return answer


def numbers_of(column: Mapping[str, Any], rows: int) -> Iterator[dict[str, Any] | None]:
    """Each row's number as a cell spells it, decoded here independently of the client."""
    fields = [f for f in ("value", "status", "sd", "bound", "contributors") if f in column]
    for i in range(rows):
        if column["status"][i] is None:
            yield None
            continue
        number = {f: column[f][i] for f in fields}
        number["reasons"] = [column["reasons"][k] for k in column["reasonIndexes"][i]]
        yield number


def assert_nothing_withheld_leaks(column: Mapping[str, Any]) -> None:
    for value, status in zip(column["value"], column["status"], strict=True):
        if status is None or status in WITHHELD:
            assert value is None
        else:
            assert value is not None
    used = {k for row in column["reasonIndexes"] for k in row}
    assert used == set(range(len(column["reasons"]))), "a reason no row has"


def assert_columns_are_the_cells(table: Mapping[str, Any]) -> list[str]:
    """The table's columns give its cells row for row; the statuses seen."""
    cells, columns = table["cells"], table["columns"]
    rows = columns["rows"]
    assert rows == len(cells)
    assert [d["name"] for d in columns["dimensions"]] == table["by"]
    for d, dimension in enumerate(columns["dimensions"]):
        assert dimension["values"] == [c["dimensions"][d]["value"] for c in cells]
        assert all(c["dimensions"][d]["name"] == dimension["name"] for c in cells)
    assert_nothing_withheld_leaks(columns["count"])
    assert list(numbers_of(columns["count"], rows)) == [c["count"] for c in cells]
    for whole, parts in (("summary", SUMMARY_PARTS), ("rate", RATE_PARTS)):
        if whole not in columns:
            continue
        if columns[whole] is None:
            assert all(c[whole] is None for c in cells)
            continue
        for part in parts:
            assert_nothing_withheld_leaks(columns[whole][part])
            decoded = list(numbers_of(columns[whole][part], rows))
            assert decoded == [None if c[whole] is None else c[whole][part] for c in cells]
        if whole == "rate":
            assert columns["rate"]["per"] == [
                None if c["rate"] is None else c["rate"]["per"] for c in cells
            ]
    return [c["count"]["status"] for c in cells]


def test_columns_are_the_cells_of_counts_pooled_per_country_and_withheld(
    federation: LocalFederation, researcher: Credentials
) -> None:
    answer = ask(
        federation,
        researcher,
        cohort(
            DIABETES,
            {
                "pooled": both("SEX, AGE_BAND_10"),
                "fine": both("SEX, AGE_BAND_5"),
                "countries": both("JURISDICTION, AGE_BAND_5"),
                "one": both("JURISDICTION"),
            },
        ),
    )
    statuses = {
        alias: assert_columns_are_the_cells(answer[alias])
        for alias in ("pooled", "fine", "countries", "one")
    }
    # The shapes this test is for: released, withheld below a minimum, pooled securely.
    assert "PERTURBED" in statuses["pooled"]
    assert "LOW" in statuses["countries"]
    assert "LOW" in statuses["fine"]
    assert any(answer["pooled"]["columns"]["count"]["contributors"])


@pytest.fixture(scope="module")
def unpooled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    """Two nodes that do not pool securely: a pooled cell with a part withheld is suppressed
    (INCOMPLETE_POOL)."""
    fed = start_federation(
        tmp_path_factory.mktemp("columns-unpooled"), (FR, DE), persons=4_000, pooling=False
    )
    yield fed
    fed.stop()


def test_columns_are_the_cells_of_suppressed_pools(unpooled: LocalFederation) -> None:
    answer = ask(
        unpooled,
        unpooled.credentials(None),
        cohort(
            DIABETES,
            {"pooled": both("SEX, AGE_BAND_5"), "countries": both("JURISDICTION, SEX")},
        ),
    )
    statuses = assert_columns_are_the_cells(answer["pooled"])
    assert "SUPPRESSED" in statuses
    assert "PERTURBED" in statuses
    assert_columns_are_the_cells(answer["countries"])


def test_columns_are_the_cells_of_a_summary_and_a_histogram(
    federation: LocalFederation, researcher: Credentials
) -> None:
    answer = ask(
        federation,
        researcher,
        cohort(
            f"{DIABETES}, {HBA1C}",
            {
                "countries": both("JURISDICTION, AGE_BAND_20", summary=True),
                "pooled": both("SEX", summary=True),
                "histogram": both("VALUE_BIN", summary=True),
            },
        ),
    )
    for alias in ("countries", "pooled", "histogram"):
        assert_columns_are_the_cells(answer[alias])
    n = answer["pooled"]["columns"]["summary"]["n"]["status"]
    assert "PERTURBED" in n


def test_columns_are_the_cells_of_a_rate(
    federation: LocalFederation, researcher: Credentials
) -> None:
    answer = ask(
        federation,
        researcher,
        cohort(
            VACCINATED,
            {
                "pooled": both("AGE_BAND_10", rate=True),
                "countries": both("JURISDICTION, SEX", rate=True),
            },
        ),
    )
    for alias in ("pooled", "countries"):
        assert_columns_are_the_cells(answer[alias])
    assert answer["pooled"]["columns"]["rate"]["per"][0] == 1000


def test_without_a_variable_the_columns_have_no_summary(
    federation: LocalFederation, researcher: Credentials
) -> None:
    table = "breakdown(by: [SEX]) { by columns { summary { n { value } } rate { per } } }"
    answer = ask(federation, researcher, cohort(DIABETES, {"t": table}))
    assert answer["t"]["columns"] == {"summary": None, "rate": None}


def _as_cells(document: str) -> str:
    """The client's document with each table asked as cells instead of columns."""
    assert "columns {" in document
    head, _, rest = document.partition("columns {")
    parts = [head]
    while True:
        # Each table's columns selection ends where its braces close.
        depth, end = 1, 0
        while depth:
            depth += {"{": 1, "}": -1}.get(rest[end], 0)
            end += 1
        end -= 1
        parts.append(CELLS_OF[_shape(rest[:end])])
        rest = rest[end + 1 :]
        if "columns {" not in rest:
            parts.append(rest)
            return "".join(parts)
        head, _, rest = rest.partition("columns {")
        parts.append(head)


def _shape(selection: str) -> str:
    return ("summary" if "summary {" in selection else "") + (
        "rate" if "rate {" in selection else ""
    )


_C: Final = "value status sd bound contributors reasons { rule jurisdiction message }"
_E: Final = "value status sd bound reasons { rule jurisdiction message }"
_SUMMARY: Final = (
    f"summary {{ n {{ {_C} }} mean {{ {_E} }} variance {{ {_E} }} sd {{ {_E} }} "
    f"ciLow {{ {_E} }} ciHigh {{ {_E} }} }}"
)
_RATE: Final = (
    f"rate {{ per events {{ {_C} }} personYears {{ {_E} }} rate {{ {_E} }} ciLow {{ {_E} }} "
    f"ciHigh {{ {_E} }} }}"
)
_CELL: Final = f"cells {{ dimensions {{ name value }} count {{ {_C} }}"
CELLS_OF: Final = {
    "": f"{_CELL} }}",
    "summary": f"{_CELL} {_SUMMARY} }}",
    "rate": f"{_CELL} {_RATE} }}",
    "summaryrate": f"{_CELL} {_SUMMARY} {_RATE} }}",
}


def _tables(raw: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [v for k, v in raw.items() if k.startswith("b") and isinstance(v, Mapping)]


def frames(answer: Any, tables: Sequence[str], *, summary: bool, rate: bool) -> list[pd.DataFrame]:
    found = [answer.frame(t) for t in tables] + [answer.all_frame()]
    found += [answer.summary_frame(t) for t in tables if summary]
    found += [answer.rate_frame(t) for t in tables if rate]
    return found


@pytest.mark.parametrize(
    "shape",
    ["counts", "summary", "rate"],
)
def test_the_client_makes_the_same_frames_from_columns_as_from_cells(
    federation: LocalFederation, researcher: Credentials, shape: str
) -> None:
    client = Client(
        federation.gateway_url,
        token=researcher.bearer,
        permits=list(researcher.permits),
        request="DR-2026-0042",
    )
    options: dict[str, Any] = {"by": [["SEX", "AGE_BAND_10"], ["JURISDICTION", "AGE_BAND_20"]]}
    if shape == "summary":
        options["concepts"] = ["ICD10:E11"]
        options["variable"] = Variable.measurement("4548-4", lo=4, hi=14, bin_width=1)
        options["by"] = [*options["by"], ["VALUE_BIN"]]
    elif shape == "rate":
        options["criteria"] = {"age": {"max": 79}}
        options["index"] = index(
            [event("DRUG", ["ATC:J07BN01"])], window=(dt.date(2021, 1, 1), None)
        )
        options["outcome"] = outcome(event("CONDITION", ["ICD10:U07.1"]), days=(0, 90), per=1_000)
    else:
        options["concepts"] = ["ICD10:E11"]
    question = cohort_question(
        request="DR-2026-0042",
        criteria={
            **make_criteria(concepts=options.pop("concepts", ())),
            **options.pop("criteria", {}),
        },
        by=breakdowns(options.pop("by")),
        **options,
    )
    assert "cells" not in question.document  # the client asks for columns
    from_columns = client.execute(question.document, question.variables).answer
    # The same question again (a repeat: the same numbers, free), its tables as cells.
    from_cells = client.execute(_as_cells(question.document), question.variables).answer
    assert all("cells" not in t for t in _tables(from_columns.raw))
    assert all("columns" not in t for t in _tables(from_cells.raw))
    tables = list(from_columns.tables)
    assert tables == list(from_cells.tables)
    pairs = zip(
        frames(from_columns, tables, summary=shape == "summary", rate=shape == "rate"),
        frames(from_cells, tables, summary=shape == "summary", rate=shape == "rate"),
        strict=True,
    )
    for mine, theirs in pairs:
        assert len(mine) > 0
        pd.testing.assert_frame_equal(mine, theirs)
    if shape == "summary":
        pd.testing.assert_frame_equal(
            from_columns.quantiles_frame("VALUE_BIN"), from_cells.quantiles_frame("VALUE_BIN")
        )
