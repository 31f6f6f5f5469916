"""The Python client against `make demo`: one question, its answer as a tidy DataFrame, saved.

    make demo                        # in another terminal: the federation, serving
    .venv/bin/python examples/client.py [DEMO_DIR] [OUT_DIR]

Reads the gateway's URL and the researcher's credentials from `.tessera/demo/` (or DEMO_DIR),
as the demo wrote them: an identity token and one permit per country.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from pathlib import Path

import pandas as pd

from tessera.client import AsyncClient, Client, PermissionDenied, event, index, relative

demo_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".tessera/demo")
out_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(".")

# The three lines: a client, a question, a DataFrame.
client = Client.demo(demo_dir)
answer = client.cohort(concepts=["ICD10:E11"], sex="FEMALE", by=["JURISDICTION", "AGE_BAND_10"])
frame = answer.frame()

print(f"type 2 diabetes, women: query {answer.query_id}, trace {answer.trace_id}")
print(answer.nodes_frame()[["jurisdiction", "node_status", "latency_ms", "value", "sd"]])
# Every cell of the grid, bands in numeric order; a withheld count is <NA>, never 0.
print(f"{len(frame)} cells, {int(frame['value'].notna().sum())} released")
print(frame.pivot(index="age_band", columns="jurisdiction", values="value"))
# Each count is the truth give or take its noise: about ±2 sd 95% of the time.
frame["low"] = frame["value"] - 2 * frame["sd"]
frame["high"] = frame["value"] + 2 * frame["sd"]
print(frame[["jurisdiction", "age_min", "age_max", "value", "low", "high", "status"]].head())

print("saved", answer.to_csv(out_dir / "e11_women.csv"), answer.to_parquet(out_dir / "e11.parquet"))


# A protocol with an index event (Coronado, as examples/02 asks it): diabetic patients
# hospitalised with COVID-19, by age band at the admission, and those who died within 28 days.
admission = event("CONDITION", ["ICD10:U07.1"], visit="INPATIENT")
coronado = index([admission], occurrence="FIRST", window=(dt.date(2020, 3, 1), None))
diabetes_before = relative(event("CONDITION", ["ICD10:E11"]), days=(-36525, -1))
died_within_28 = relative(event("DEATH"), days=(0, 28))
for name, relatives in (
    ("admitted", [diabetes_before]),
    ("died within 28 days", [diabetes_before, died_within_28]),
):
    answer = client.cohort(index=coronado, criteria={"relative": relatives}, by=["AGE_BAND_20"])
    pooled = answer.count
    shown = "withheld" if pooled is None or pooled.value is None else f"{pooled.value} ±{pooled.sd}"
    print(f"Coronado, {name}: {shown}")


# Several questions at once, with the async client.
async def by_sex(codes: list[str]) -> pd.DataFrame:
    async with AsyncClient.demo(demo_dir) as client:
        answers = await asyncio.gather(
            *(client.cohort(concepts=[code], by=["SEX"], total=False) for code in codes)
        )
    return pd.concat(
        [a.frame().assign(concept=code) for a, code in zip(answers, codes, strict=True)]
    )


print(
    asyncio.run(by_sex(["ICD10:I10", "ICD10:J45"])).pivot(
        index="concept", columns="sex", values="value"
    )
)

# A refusal raises a typed error with the gateway's stable code.
try:
    no_permits = Client(client.url, token=client.credentials.bearer, request=client.request)
    no_permits.cohort(concepts=["ICD10:E11"])
except PermissionDenied as error:
    print("without permits:", error.code, error.message)
