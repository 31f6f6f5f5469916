"""The questions the benchmarks ask."""

from __future__ import annotations

from typing import Final

# A gateway-shaped cohort question: criteria, the pooled count, every node's status and count,
# and a two-dimension breakdown. Asks every member of the federation. Filed as "a 20-cell
# breakdown", its table has 3 cells per node: a table is its dimensions' domain as the criteria
# bound it (FEMALE × 40-49, 50-59, 60-69). Kept as it is so its history stays comparable;
# `COHORT_21` is the same question with a table that has 21.
COHORT: Final = """
query Cohort {
  cohort(
    request: "DR-2026-0042"
    criteria: {
      sex: FEMALE
      age: { min: 40, max: 69 }
      conditions: [{ vocabulary: ICD10, code: "E11", descendants: true }]
    }
  ) {
    queryId
    traceId
    count { value status reasons { rule jurisdiction message } }
    byJurisdiction { jurisdiction status latencyMs count { value status } }
    breakdown(by: [SEX, AGE_BAND_10]) {
      cells { dimensions { name value } count { value status } }
    }
  }
}
"""

# The same cohort, only the pooled count and each node's status and count: what a question
# costs without a breakdown table.
COUNT: Final = """
query CohortCount {
  cohort(
    request: "DR-2026-0042"
    criteria: {
      sex: FEMALE
      age: { min: 40, max: 69 }
      conditions: [{ vocabulary: ICD10, code: "E11", descendants: true }]
    }
  ) {
    queryId
    count { value status }
    byJurisdiction { jurisdiction status count { value status } }
  }
}
"""


_CELLS: Final = "cells { dimensions { name value } count { value status } }"

# `COHORT` with a table of 21 cells per node: no criterion on sex and ages 30-99, so SEX ×
# AGE_BAND_10 is 3 × 7 cells.
COHORT_21: Final = COHORT.replace(
    "sex: FEMALE\n      age: { min: 40, max: 69 }", "age: { min: 30, max: 99 }"
)


def _with_table(selection: str) -> str:
    """`COHORT` with its table's selection replaced by `selection`."""
    if _CELLS not in COHORT:
        raise ValueError("COHORT no longer selects its cells as expected")
    return COHORT.replace(_CELLS, selection)


# The cohort question with its table as columns (`breakdown { columns }`): the same numbers
# as `COHORT`'s cells, completed without an object per cell.
_COLUMNS: Final = "columns { dimensions { name values } count { value status } }"
COHORT_COLUMNS: Final = _with_table(_COLUMNS)
COHORT_21_COLUMNS: Final = COHORT_21.replace(_CELLS, _COLUMNS)

# What the Python client and `tessera query` read of each number (value, status, sd, bound,
# contributors and reasons), from the cells and from the columns.
_EVERY_FIELD: Final = "value status sd bound contributors reasons { rule jurisdiction message }"
COHORT_FULL: Final = _with_table(
    f"by cells {{ dimensions {{ name value }} count {{ {_EVERY_FIELD} }} }}"
)
COHORT_FULL_COLUMNS: Final = _with_table(
    f"by columns {{ dimensions {{ name values }} count {{ {_EVERY_FIELD} reasonIndexes }} }}"
)

# The shape of the Python client's question: no criteria on sex or age, so each table is its
# dimensions' whole domain (SEX × AGE_BAND_10: 42 cells; JURISDICTION × AGE_BAND_10: 14 per
# node), every field of each number, as cells and as columns.
_WIDE: Final = """
query Wide {
  cohort(
    request: "DR-2026-0042"
    criteria: { conditions: [{ vocabulary: ICD10, code: "E11", descendants: true }] }
  ) {
    queryId
    traceId
    count { value status reasons { rule jurisdiction message } }
    byJurisdiction { jurisdiction status latencyMs count { value status } }
    pooled: breakdown(by: [SEX, AGE_BAND_10]) { TABLE }
    countries: breakdown(by: [JURISDICTION, AGE_BAND_10]) { TABLE }
  }
}
"""
WIDE: Final = _WIDE.replace(
    "TABLE", f"by cells {{ dimensions {{ name value }} count {{ {_EVERY_FIELD} }} }}"
)
WIDE_COLUMNS: Final = _WIDE.replace(
    "TABLE",
    f"by columns {{ dimensions {{ name values }} count {{ {_EVERY_FIELD} reasonIndexes }} }}",
)
