"""Drug exposures. Drugs carry the RxNorm ingredient as the standard concept and the ATC
code as the source, as European sources coded in ATC are usually mapped."""

from __future__ import annotations

from typing import Final

import numpy as np

from synth import vocabulary as v
from synth.arrays import (
    MISSING,
    Days,
    Index,
    Ints,
    chance,
    day,
    repeat_rows,
    uniform_days,
)
from synth.countries import CountryParams
from synth.histories import History
from synth.population import People
from synth.rows import Rows, full

_ATC_KEYS: Final = np.array(sorted(v.INGREDIENT_ATC), dtype=np.int64)
_ATC_VALUES: Final = np.array(
    [v.ATC_ID[v.INGREDIENT_ATC[k]] for k in sorted(v.INGREDIENT_ATC)], dtype=np.int64
)


class Prescriptions:
    """Drug exposures: courses of repeated prescriptions, and vaccine doses."""

    def __init__(self, rng: np.random.Generator, people: People, end: Days) -> None:
        self.rng, self.people, self.end = rng, people, end
        self.rows = Rows()

    def course(
        self, who: Index, start: Days, ingredient: Ints | int, fills: float, supply: int
    ) -> None:
        """Prescriptions of `supply` days each for persons `who`, from `start[who]` until the
        patient stops (geometric number of fills, mean `fills`) or leaves observation.
        `start` and an array `ingredient` hold one value per person of the chunk."""
        count = self.rng.geometric(1 / fills, len(who)).astype(np.int64)
        row, rank = repeat_rows(count)
        person = who[row]
        late = np.where(rank > 0, uniform_days(self.rng, 0, 10, len(row)), 0)
        date = start[person] + rank * supply + late
        keep = date <= self.end[person]
        person, date = person[keep], date[keep]
        drug = (
            ingredient[person]
            if isinstance(ingredient, np.ndarray)
            else full(len(person), ingredient)
        )
        self._add(person, date, drug, supply, v.EHR_PRESCRIPTION)

    def vaccinate(self, doses: Days) -> None:
        person, dose = np.nonzero(doses != MISSING)
        self._add(
            person,
            doses[person, dose],
            full(len(person), v.COVID_MRNA_VACCINE),
            1,
            v.EHR_ADMINISTRATION,
        )

    def _add(self, who: Index, date: Days, drug: Ints, supply: int, kind: int) -> None:
        end = np.minimum(date + supply - 1, self.end[who])  # nobody takes drugs after death
        self.rows.add(
            len(who),
            person_id=self.people.person_id[who],
            drug_concept_id=drug,
            drug_exposure_start_date=date,
            drug_exposure_start_datetime=date,
            drug_exposure_end_date=end,
            drug_exposure_end_datetime=end,
            drug_type_concept_id=kind,
            quantity=float(supply),
            days_supply=supply,
            drug_source_concept_id=_ATC_VALUES[np.searchsorted(_ATC_KEYS, drug)],
        )


def prescribe(
    rng: np.random.Generator,
    drugs: Prescriptions,
    people: People,
    h: History,
    params: CountryParams,
) -> None:
    n = len(people)

    def after(date: Days, low: int, high: int) -> Days:
        """`date` plus a uniform delay, for every person; callers select who is treated."""
        return date + uniform_days(rng, low, high, n)

    t2d, t1d = h.t2d, h.t1d
    metformin = t2d.has & chance(rng, 0.82, n)
    drugs.course(np.flatnonzero(metformin), after(t2d.date, 0, 90), v.METFORMIN, 10, 90)

    drugs.course(t1d.who, after(t1d.date, 0, 7), v.INSULIN_GLARGINE, 16, 90)
    aspart = t1d.has & chance(rng, 0.9, n)
    drugs.course(np.flatnonzero(aspart), after(t1d.date, 0, 7), v.INSULIN_ASPART, 16, 90)
    # Type 2 diabetics move to insulin years after diagnosis, the elderly more often.
    insulin = t2d.has & chance(rng, np.where(people.age >= 70, 0.22, 0.12), n)
    start = after(t2d.date, 365, 5 * 365)
    drugs.course(np.flatnonzero(insulin), start, v.INSULIN_GLARGINE, 8, 90)

    # GLP-1 analogues go mostly to obese diabetics; semaglutide replaced liraglutide from 2019.
    obese = h.obesity.has | (people.bmi >= 30)
    share = np.minimum(params.glp1 * np.where(obese, 2.2, 0.7), 0.9)
    glp1 = t2d.has & chance(rng, share, n)
    start = np.maximum(after(t2d.date, 180, 4 * 365), day("2012-01-01"))
    newer = (start >= day("2019-01-01")) & chance(rng, 0.7, n)
    drug = np.where(newer, v.SEMAGLUTIDE, v.LIRAGLUTIDE)
    drugs.course(np.flatnonzero(glp1), start, drug, 6, 90)

    hf, htn, mi = h.heart_failure, h.hypertension, h.myocardial_infarction
    sglt2 = (t2d.has & chance(rng, 0.18, n)) | (hf.has & chance(rng, 0.10, n))
    start = np.maximum(after(np.where(t2d.has, t2d.date, hf.date), 90, 3 * 365), day("2015-01-01"))
    drug = np.where(chance(rng, 0.6, n), v.EMPAGLIFLOZIN, v.DAPAGLIFLOZIN)
    drugs.course(np.flatnonzero(sglt2), start, drug, 8, 90)

    ace = (htn.has & chance(rng, 0.45, n)) | (hf.has & chance(rng, 0.4, n))
    start = after(np.where(htn.has, htn.date, hf.date), 0, 60)
    drugs.course(np.flatnonzero(ace), start, v.RAMIPRIL, 12, 90)

    by_hf = hf.has & chance(rng, 0.7, n)
    by_mi = mi.has & chance(rng, 0.6, n)
    by_htn = htn.has & chance(rng, 0.22, n)
    start = after(np.where(by_hf, hf.date, np.where(by_mi, mi.date, htn.date)), 0, 30)
    drugs.course(np.flatnonzero(by_hf | by_mi | by_htn), start, v.BISOPROLOL, 12, 90)

    drugs.vaccinate(h.doses)
