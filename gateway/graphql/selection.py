"""Reading the breakdowns a query selects, so that the whole selection becomes one request per
node: `cohort { a: breakdown(by: [SEX]) ...F }` asks the nodes once for every table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from strawberry.types.nodes import SelectedField, Selection

from schema.codes import Dimension
from schema.query import Breakdown

BREAKDOWN_FIELD = "breakdown"
COUNT_FIELD = "count"
NODES_FIELD = "byJurisdiction"
SUMMARY_FIELD = "summary"


def requested_breakdowns(cohort_fields: Iterable[Selection]) -> list[Breakdown]:
    """Every distinct `breakdown(by:)` under the given `cohort` field nodes, through aliases,
    fragments and variables, in the order they appear; skipped ones (`@skip`/`@include`)
    are left out."""
    found: dict[Breakdown, None] = {}

    def walk(selections: Iterable[Selection]) -> None:
        for selection in selections:
            if _skipped(selection.directives):
                continue
            if not isinstance(selection, SelectedField):
                walk(selection.selections)  # a fragment spread or an inline fragment
            elif selection.name == BREAKDOWN_FIELD:
                found[_dimensions(selection.arguments.get("by"))] = None

    for field in cohort_fields:
        walk(field.selections)
    return list(found)


def requested_count(cohort_fields: Iterable[Selection]) -> bool:
    """Whether the pooled `count` is selected under the given `cohort` field nodes (through
    aliases and fragments; skipped ones left out): a pooled count costs budget of its own
    when it is pooled securely."""

    def walk(selections: Iterable[Selection]) -> bool:
        for selection in selections:
            if _skipped(selection.directives):
                continue
            if not isinstance(selection, SelectedField):
                if walk(selection.selections):
                    return True
            elif selection.name == COUNT_FIELD:
                return True
        return False

    return any(walk(field.selections) for field in cohort_fields)


def requested_node_count(cohort_fields: Iterable[Selection]) -> bool:
    """Whether each country's own `count` is selected (`byJurisdiction { count }`, through
    aliases and fragments; skipped ones left out): a country pooled securely releases its own
    total only when it is."""

    def walk(selections: Iterable[Selection], under_nodes: bool) -> bool:
        for selection in selections:
            if _skipped(selection.directives):
                continue
            if not isinstance(selection, SelectedField):
                if walk(selection.selections, under_nodes):
                    return True
            elif under_nodes:
                if selection.name == COUNT_FIELD:
                    return True
            elif selection.name == NODES_FIELD and walk(selection.selections, True):
                return True
        return False

    return any(walk(field.selections, False) for field in cohort_fields)


def requested_summary(cohort_fields: Iterable[Selection]) -> bool:
    """Whether a `summary` of the question's variable is selected anywhere under the given
    `cohort` field nodes (the pooled one, a country's, a cell's; through aliases and
    fragments, skipped ones left out): its statistics are asked of the nodes, and charged,
    only then."""

    def walk(selections: Iterable[Selection]) -> bool:
        for selection in selections:
            if _skipped(selection.directives):
                continue
            if isinstance(selection, SelectedField) and selection.name == SUMMARY_FIELD:
                return True
            if walk(selection.selections):
                return True
        return False

    return any(walk(field.selections) for field in cohort_fields)


def _dimensions(value: Any) -> Breakdown:
    # Literals arrive as enum names, variables already coerced to members; GraphQL also lets a
    # single value stand for a one-element list.
    values = value if isinstance(value, list) else [] if value is None else [value]
    return tuple(v if isinstance(v, Dimension) else Dimension[str(v)] for v in values)


def _skipped(directives: Mapping[str, Mapping[str, Any]]) -> bool:
    skip = directives.get("skip", {}).get("if") is True
    excluded = "include" in directives and directives["include"].get("if") is False
    return skip or excluded
