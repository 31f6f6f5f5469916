"""Events (the criteria of one domain) and the person at the index (age, sex) as the query
model's `EventSpec`, ranges and windows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

from schema.codes import EventDomain, Sex, VisitType
from schema.query import (
    CODED_DOMAINS,
    MAX_DATE,
    MIN_DATE,
    AgeRange,
    DateWindow,
    EventSpec,
    ValueRange,
)
from tessera.atlas import circe
from tessera.atlas.concept_sets import visit_type
from tessera.atlas.context import (
    AT_LEAST,
    DOMAINS,
    GENDERS,
    Path,
    TranslatorBase,
    alias,
    empty_window,
)
from tessera.atlas.problems import AtlasProblem, json_path

# The filters of a visit criterion that make it more than "a visit of this type".
_OWN_FILTERS: Final = (
    "first",
    "age",
    "gender",
    "occurrence_start_date",
    "visit_type",
    "value_as_number",
    "correlated_criteria",
)


class EventTranslator(TranslatorBase):
    """Criteria of one domain as `EventSpec`s; ages and sexes at the index."""

    # --- events -----------------------------------------------------------------------------

    def domain(self, criterion: circe.Criterion, path: Path) -> tuple[str, EventDomain] | None:
        for key in circe.extras(criterion):
            self.refuse(
                AtlasProblem.UNSUPPORTED_ELEMENT,
                (*path, key),
                f"{key} events are not in Tessera's query model (it has "
                f"{', '.join(alias(circe.Criterion, n) for n in DOMAINS)})",
            )
        present = [name for name in DOMAINS if getattr(criterion, name) is not None]
        if len(present) != 1 or circe.extras(criterion):
            if not circe.extras(criterion):
                self.refuse(
                    AtlasProblem.MALFORMED, path, "a criterion names exactly one kind of event"
                )
            return None
        return present[0], DOMAINS[present[0]]

    def event(
        self, criterion: circe.Criterion, path: Path, *, at_index: bool
    ) -> tuple[EventSpec, circe.DomainCriterion, Path] | None:
        """The event a criterion names, its ATLAS form and path. Filters about the person
        (`Age`, `Gender`) and `First` are the caller's (they mean something at the index only)."""
        found = self.domain(criterion, path)
        if found is None:
            return None
        name, domain = found
        spec: circe.DomainCriterion = getattr(criterion, name)
        where = (*path, alias(circe.Criterion, name))
        self.refuse_extras(spec, where, "criteria filters")
        if not at_index:
            for attribute in ("first", "age", "gender"):
                if not circe.neutral(getattr(spec, attribute)):
                    key = alias(circe.DomainCriterion, attribute)
                    self.refuse(
                        AtlasProblem.UNSUPPORTED_ELEMENT,
                        (*where, key),
                        f"{key} on an event other than the index event is not in Tessera's "
                        "query model",
                    )
        fields: dict[str, Any] = {"domain": domain}
        ok = True
        nested = spec.correlated_criteria
        if nested is not None and not nested.is_empty():
            at_visit = self.at_visit(nested, (*where, "CorrelatedCriteria"), domain)
            ok = at_visit is not None
            fields["visit"] = at_visit
        if domain is EventDomain.VISIT:
            if spec.codeset_id is None:
                self.refuse(
                    AtlasProblem.UNSUPPORTED_VALUE,
                    (*where, "CodesetId"),
                    "a visit of any type: Tessera's visits are of a type",
                )
                ok = False
            else:
                fields["visit"] = self.visit_concepts(spec.codeset_id, (*where, "CodesetId"))
                ok = ok and fields["visit"] is not None
        elif domain is EventDomain.DEATH:
            if spec.codeset_id is not None:
                self.refuse(
                    AtlasProblem.UNSUPPORTED_ELEMENT,
                    (*where, "CodesetId"),
                    "causes of death are not in Tessera's query model (a death is one event)",
                )
                ok = False
        elif spec.codeset_id is None:
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE,
                (*where, "CodesetId"),
                f"every {domain.value.lower()} event, of any concept: Tessera's events are named "
                "by codes",
            )
            ok = False
        else:
            codes = self.code_set(spec.codeset_id, (*where, "CodesetId"))
            if codes is None:
                ok = False
            elif not codes.codes:
                self.refuse(
                    AtlasProblem.UNKNOWN_CONCEPT_SET,
                    (*where, "CodesetId"),
                    f"concept set {spec.codeset_id} includes no concept",
                )
                ok = False
            else:
                fields["codes"] = list(codes.codes)
                fields["excluded"] = list(codes.excluded)
        if spec.visit_type:
            if domain in (EventDomain.VISIT, EventDomain.DEATH) or "visit" in fields:
                self.refuse(
                    AtlasProblem.UNSUPPORTED_ELEMENT,
                    (*where, "VisitType"),
                    f"a visit type on a {domain.value.lower()} event"
                    if domain not in CODED_DOMAINS
                    else "a second visit type (the event's own visit names one already)",
                )
                ok = False
            else:
                fields["visit"] = visit_type(
                    [(c.concept_id, False, False) for c in spec.visit_type],
                    json_path((*where, "VisitType")),
                    self.refusals,
                )
                ok = ok and fields["visit"] is not None
        if spec.value_as_number is not None:
            fields["value"] = self.value_range(
                spec.value_as_number, (*where, "ValueAsNumber"), domain
            )
            ok = ok and fields["value"] is not None
        if spec.occurrence_start_date is not None:
            fields["window"] = self.date_window(
                spec.occurrence_start_date, (*where, "OccurrenceStartDate")
            )
            ok = ok and fields["window"] is not None
        if not ok:
            return None
        made = self.build(lambda: EventSpec(**fields), where)
        return None if made is None else (made, spec, where)

    def at_visit(
        self, group: circe.CriteriaGroup, path: Path, domain: EventDomain
    ) -> VisitType | None:
        """ATLAS's way of saying "recorded at a visit of this type": one visit criterion,
        nested in the event's, at the event's own visit (`RestrictVisit`), in a window open
        both ways. Anything else nested in an event is refused."""
        self.refuse_extras(group, path, "criteria groups")
        only = group.criteria_list[0] if len(group.criteria_list) == 1 else None
        visit = None if only is None else only.criteria.visit_occurrence
        if (
            only is None
            or visit is None
            or group.demographic_criteria_list
            or group.groups
            or group.type.upper() not in ("ALL", "ANY")
            or domain not in CODED_DOMAINS
        ):
            self.refuse(
                AtlasProblem.UNSUPPORTED_ELEMENT,
                path,
                "criteria nested in an event's are in Tessera's query model only as one visit "
                "at the event's own visit (RestrictVisit): the event's visit type",
            )
            return None
        where = (*path, "CriteriaList", 0)
        self.refuse_extras(only, where, "correlated criteria")
        self.refuse_extras(visit, (*where, "Criteria", "VisitOccurrence"), "criteria filters")
        window = only.start_window
        occurrence = only.occurrence
        problems = [
            (not only.restrict_visit, "RestrictVisit", "any visit, not the event's own"),
            (
                window.start.days is not None or window.end.days is not None,
                "StartWindow",
                "a visit starting in a window of days, not the event's own visit",
            ),
            (
                only.end_window is not None and not empty_window(only.end_window),
                "EndWindow",
                "a window on the visit's end",
            ),
            (
                bool(window.use_event_end or window.use_index_end),
                "StartWindow",
                "a window on end dates",
            ),
            (
                not (occurrence.type == AT_LEAST and occurrence.count == 1)
                or occurrence.is_distinct,
                "Occurrence",
                "other than at least one visit",
            ),
            (
                any(not circe.neutral(getattr(visit, a)) for a in _OWN_FILTERS),
                "Criteria",
                "a visit with filters of its own",
            ),
        ]
        failed = False
        for bad, key, what in problems:
            if bad:
                self.refuse(AtlasProblem.UNSUPPORTED_VALUE, (*where, key), what)
                failed = True
        if visit.codeset_id is None:
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE,
                (*where, "Criteria", "VisitOccurrence", "CodesetId"),
                "a visit of any type",
            )
            return None
        if failed:
            return None
        if not only.ignore_observation_period:
            self.note(
                (*where, "IgnoreObservationPeriod"),
                "ATLAS also asks that the visit start within the event's observation period; "
                "Tessera asks only that the event was recorded at it",
            )
        return self.visit_concepts(
            visit.codeset_id, (*where, "Criteria", "VisitOccurrence", "CodesetId")
        )

    def value_range(
        self, value: circe.NumericRange, path: Path, domain: EventDomain
    ) -> ValueRange | None:
        if domain is not EventDomain.MEASUREMENT:
            self.refuse(AtlasProblem.UNSUPPORTED_ELEMENT, path, "a value on a non-measurement")
            return None
        self.refuse_extras(value, path, "ranges")
        if value.op in ("gt", "lt", "!bt"):
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE,
                (*path, "Op"),
                f"{value.op!r}: Tessera's value ranges include their ends (gte, lte, eq, bt)",
            )
            return None
        bounds = _inclusive(value, self, path)
        if bounds is None:
            return None
        low, high = bounds
        return self.build(lambda: ValueRange(min=low, max=high), path)

    def date_window(self, value: circe.DateRange, path: Path) -> DateWindow | None:
        self.refuse_extras(value, path, "date ranges")
        try:
            first = dt.date.fromisoformat(value.value)
            last = None if value.extent is None else dt.date.fromisoformat(value.extent)
        except ValueError:
            self.refuse(AtlasProblem.MALFORMED, path, "a date is not YYYY-MM-DD")
            return None
        if not MIN_DATE <= first <= MAX_DATE:
            # Checked before a day is added to it or taken from it (year 1 or 9999 overflows).
            self.refuse(
                AtlasProblem.OUT_OF_BOUNDS,
                (*path, "Value"),
                f"dates lie between {MIN_DATE} and {MAX_DATE}",
            )
            return None
        day = dt.timedelta(days=1)
        bounds: dict[str, tuple[dt.date | None, dt.date | None]] = {
            "gt": (first + day, None),
            "gte": (first, None),
            "lt": (None, first - day),
            "lte": (None, first),
            "eq": (first, first),
        }
        start: dt.date | None
        end: dt.date | None
        if value.op == "bt" and last is not None:
            start, end = first, last
        elif value.op in bounds:
            start, end = bounds[value.op]
        else:
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE, (*path, "Op"), f"{value.op!r}: not one window"
            )
            return None
        return self.build(lambda: DateWindow(start=start, end=end), path)

    # --- the person, at the index -----------------------------------------------------------

    def age(self, value: circe.NumericRange, path: Path) -> AgeRange | None:
        self.refuse_extras(value, path, "ranges")
        if value.op == "!bt":
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE, (*path, "Op"), "'!bt': ages outside a range"
            )
            return None
        bounds = _inclusive(value, self, path)
        if bounds is None:
            return None
        low, high = bounds
        if any(b is not None and not float(b).is_integer() for b in (low, high)):
            self.refuse(AtlasProblem.UNSUPPORTED_VALUE, path, "ages are whole years")
            return None
        # Whole years: a strict bound is the next year in.
        shift = {"gt": (1, 0), "lt": (0, -1)}.get(value.op, (0, 0))
        lo = None if low is None else int(low) + shift[0]
        hi = None if high is None else int(high) + shift[1]
        return self.build(lambda: AgeRange(min=lo, max=hi), path)

    def sex(self, genders: Sequence[circe.CirceConcept], path: Path) -> Sex | None:
        found = {GENDERS.get(c.concept_id) for c in genders}
        if None in found or len(found) != 1:
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE,
                path,
                f"gender concepts {sorted(c.concept_id for c in genders)}: Tessera restricts to "
                "one sex (8507 male or 8532 female), or none",
            )
            return None
        return found.pop()


def _inclusive(
    value: circe.NumericRange, translation: TranslatorBase, path: Path
) -> tuple[float | None, float | None] | None:
    ops: dict[str, tuple[float | None, float | None]] = {
        "gt": (value.value, None),
        "gte": (value.value, None),
        "lt": (None, value.value),
        "lte": (None, value.value),
        "eq": (value.value, value.value),
    }
    if value.op == "bt":
        if value.extent is None:
            translation.refuse(AtlasProblem.MALFORMED, (*path, "Extent"), "'bt' without Extent")
            return None
        return value.value, value.extent
    if value.op not in ops:
        translation.refuse(AtlasProblem.UNSUPPORTED_VALUE, (*path, "Op"), f"{value.op!r}")
        return None
    return ops[value.op]
