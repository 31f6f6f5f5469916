"""ATLAS criteria groups (additional criteria, inclusion rules) as the query model's criteria:
correlated criteria as criteria relative to the index, groups ALL and ANY, demographics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from schema.query import (
    MAX_ANY_OF,
    MAX_RELATIVE_DAYS,
    AgeRange,
    Criteria,
    RelativeCriterion,
    RelativeWindow,
)
from tessera.atlas import circe
from tessera.atlas.context import ALWAYS, AT_LEAST, AT_MOST, EXACTLY, Path, alias, empty_window
from tessera.atlas.events import EventTranslator
from tessera.atlas.problems import AtlasProblem


class GroupTranslator(EventTranslator):
    """Criteria groups as criteria, each correlated criterion a relative criterion."""

    # --- criteria groups --------------------------------------------------------------------

    def group(self, group: circe.CriteriaGroup, path: Path) -> Criteria | None:
        """A criteria group as criteria; `Criteria()` when it holds for everyone."""
        self.refuse_extras(group, path, "criteria groups")
        parts: list[Criteria | None] = []
        for i, correlated in enumerate(group.criteria_list):
            parts.append(self.correlated(correlated, (*path, "CriteriaList", i)))
        for i, demographic in enumerate(group.demographic_criteria_list):
            parts.append(self.demographic(demographic, (*path, "DemographicCriteriaList", i)))
        for i, nested in enumerate(group.groups):
            parts.append(self.group(nested, (*path, "Groups", i)))
        kind = group.type.upper()
        if kind.startswith("AT_") and group.count is not None:
            if kind == "AT_LEAST" and group.count == len(parts):
                kind = "ALL"
            elif kind == "AT_LEAST" and group.count == 1:
                kind = "ANY"
        if kind not in ("ALL", "ANY"):
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE,
                (*path, "Type"),
                f"{group.type} {group.count}: Tessera's groups are ALL or ANY (AT_LEAST 1, or "
                "AT_LEAST all of them)",
            )
            return None
        if any(part is None for part in parts):
            return None
        made = [p for p in parts if p is not None]
        if kind == "ALL" or len(made) <= 1:
            return self.conjoin(made, path)
        if any(p == Criteria() for p in made):
            return Criteria()  # one alternative holds for everyone
        if len(made) > MAX_ANY_OF:
            self.refuse(
                AtlasProblem.OUT_OF_BOUNDS,
                path,
                f"{len(made)} alternatives: Tessera's groups have at most {MAX_ANY_OF}",
            )
            return None
        return self.build(lambda: Criteria(any_of=made), path)

    def conjoin(self, parts: Sequence[Criteria], path: Path) -> Criteria | None:
        """Criteria that hold when every part does."""
        result: Criteria | None = Criteria()
        for part in parts:
            if result is None:
                return None
            result = self._and(result, part, path)
        return result

    def _and(self, a: Criteria, b: Criteria, path: Path) -> Criteria | None:
        if a.sex is not None and b.sex is not None and a.sex != b.sex:
            self.refuse(AtlasProblem.UNSUPPORTED_VALUE, path, "both sexes: nobody")
            return None
        age = _intersect(a.age, b.age)
        if age is False:
            self.refuse(AtlasProblem.UNSUPPORTED_VALUE, path, "age ranges that do not overlap")
            return None
        if a.any_of and b.any_of:
            options: list[Criteria] = []
            for option in a.any_of:
                joined = self._and(option, Criteria(any_of=b.any_of), path)
                if joined is None:
                    return None
                options.append(joined)
            any_of = options
        else:
            any_of = list(a.any_of or b.any_of)
        return self.build(
            lambda: Criteria(
                sex=a.sex or b.sex,
                age=age or None,
                relative=[*a.relative, *b.relative],
                any_of=any_of,
            ),
            path,
        )

    def demographic(self, criteria: circe.DemographicCriteria, path: Path) -> Criteria | None:
        self.refuse_extras(criteria, path, "demographic criteria")
        age = None if criteria.age is None else self.age(criteria.age, (*path, "Age"))
        sex = None if not criteria.gender else self.sex(criteria.gender, (*path, "Gender"))
        if (criteria.age is not None and age is None) or (criteria.gender and sex is None):
            return None
        return self.build(lambda: Criteria(age=age, sex=sex), path)

    def correlated(self, correlated: circe.CorrelatedCriteria, path: Path) -> Criteria | None:
        self.refuse_extras(correlated, path, "correlated criteria")
        ok = True
        if correlated.end_window is not None and not empty_window(correlated.end_window):
            hint = (
                " (an index event during a visit of a type: give it a VisitType)"
                if correlated.criteria.visit_occurrence is not None
                else ""
            )
            self.refuse(
                AtlasProblem.UNSUPPORTED_ELEMENT,
                (*path, "EndWindow"),
                f"a window on the event's end: Tessera's windows are on event start dates{hint}",
            )
            ok = False
        if correlated.restrict_visit:
            self.refuse(
                AtlasProblem.UNSUPPORTED_ELEMENT,
                (*path, "RestrictVisit"),
                "events at the index event's own visit are not in Tessera's query model",
            )
            ok = False
        window = self.window(correlated.start_window, (*path, "StartWindow"))
        if not correlated.ignore_observation_period:
            self.note(
                (*path, "IgnoreObservationPeriod"),
                "ATLAS counts only the events within the index's observation period; Tessera "
                "counts every event in the window (the same where a CDM's observation periods "
                "cover its events, as OMOP conventions ask)",
            )
        found = self.event(correlated.criteria, (*path, "Criteria"), at_index=False)
        occurrence = correlated.occurrence
        counts = self.counts(occurrence, (*path, "Occurrence"))
        if not ok or window is None or found is None or counts is None:
            return None
        if counts is ALWAYS:
            self.note((*path, "Occurrence"), "at least 0 events: holds for everyone")
            return Criteria()
        event = found[0]
        made = self.build(lambda: RelativeCriterion(event=event, window=window, **counts), path)
        return None if made is None else Criteria(relative=[made])

    def counts(self, occurrence: circe.OccurrenceCount, path: Path) -> dict[str, Any] | None:
        """A relative criterion's counts (`at_least`, `at_most`, `exclude`), or `ALWAYS`."""
        self.refuse_extras(occurrence, path, "occurrence counts")
        if occurrence.is_distinct:
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE,
                (*path, "IsDistinct"),
                "counts of distinct concepts: Tessera counts events",
            )
            return None
        n, kind = occurrence.count, occurrence.type
        if n < 0 or kind not in (EXACTLY, AT_MOST, AT_LEAST):
            self.refuse(AtlasProblem.MALFORMED, path, f"occurrence type {kind}, count {n}")
            return None
        if kind == AT_LEAST:
            return ALWAYS if n == 0 else {"at_least": n}
        if n == 0:
            return {"exclude": True}
        if kind == EXACTLY:
            return {"at_least": n, "at_most": n}
        # At most n: not at least n + 1.
        return {"at_least": n + 1, "exclude": True}

    def window(self, window: circe.Window, path: Path) -> RelativeWindow | None:
        self.refuse_extras(window, path, "windows")
        ok = True
        for flag, what in (
            ("use_index_end", "the index event's end"),
            ("use_event_end", "the event's end"),
        ):
            if getattr(window, flag):
                self.refuse(
                    AtlasProblem.UNSUPPORTED_VALUE,
                    (*path, alias(circe.Window, flag)),
                    f"a window on {what}: Tessera's windows are on start dates",
                )
                ok = False
        days: list[int] = []
        for name, bound in (("Start", window.start), ("End", window.end)):
            self.refuse_extras(bound, (*path, name), "window bounds")
            if bound.coeff not in (-1, 1):
                self.refuse(AtlasProblem.MALFORMED, (*path, name, "Coeff"), "Coeff is -1 or 1")
                return None
            if bound.days is None:
                # As far as the index's observation period reaches: at most a century.
                days.append(bound.coeff * MAX_RELATIVE_DAYS)
            elif bound.days > MAX_RELATIVE_DAYS:
                self.refuse(
                    AtlasProblem.OUT_OF_BOUNDS,
                    (*path, name, "Days"),
                    f"{bound.days} days: Tessera's windows reach {MAX_RELATIVE_DAYS} days",
                )
                ok = False
            else:
                days.append(bound.coeff * bound.days)
        if not ok:
            return None
        start, end = days
        return self.build(lambda: RelativeWindow(start_days=start, end_days=end), path)


def _intersect(a: AgeRange | None, b: AgeRange | None) -> AgeRange | bool | None:
    if a is None or b is None:
        return a or b
    lows = [x for x in (a.min, b.min) if x is not None]
    highs = [x for x in (a.max, b.max) if x is not None]
    low = max(lows) if lows else None
    high = min(highs) if highs else None
    if low is not None and high is not None and low > high:
        return False
    return AgeRange(min=low, max=high)
