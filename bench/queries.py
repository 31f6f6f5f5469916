"""The questions the benchmarks ask."""

from __future__ import annotations

from typing import Final

# A gateway-shaped cohort question: criteria, the pooled count, every node's status and count,
# and a two-dimension breakdown (20 cells per node). Asks every member of the federation.
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
