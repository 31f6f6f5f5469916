"""Limits on one GraphQL request, each refused with its own stable code.

On the document (validation rules, made once so that the validation cache, keyed by the
rules, keeps hitting): depth (QUERY_TOO_DEEP), aliases (TOO_MANY_ALIASES) and, unless it is
enabled, introspection (INTROSPECTION_DISABLED). The token limit is a parser option
(TOO_MANY_TOKENS); body size and batch size are HTTP limits (`gateway.http`).

On what is asked (`QueryBudget`): every `cohort` field costs what its plan costs
(`gateway.planner.cohort_cost`), charged when the field is planned, before anything is sent
to a node; all fields of one HTTP request (aliases, batched operations) share one budget.

How many questions a request asks at once (`cohort_fields`, every operation of a batch
summed) is read from the documents before any of them runs: the researcher's share of the
questions in flight (`gateway.fairshare`) admits or refuses them all together.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    get_named_type,
    is_introspection_type,
    parse,
)

from schema.errors import ErrorCode, TesseraError

# Every field counts, introspection too: the schema's own types nest at most 6 deep, the
# standard introspection query (GraphiQL's) 15.
MAX_DEPTH: Final = 16
# Every `cohort` alias is a fan-out to every node.
MAX_ALIASES: Final = 16
MAX_TOKENS: Final = 4000
# Fields selected once fragments are expanded (what execution and the planner walk).
MAX_EXPANDED_FIELDS: Final = 1000


def _error(message: str, code: ErrorCode, nodes: Any = None) -> GraphQLError:
    return GraphQLError(message, nodes, extensions={"code": code.value})


class DocumentShapeRule(ASTValidationRule):
    """Depth (QUERY_TOO_DEEP) and size once fragments are expanded (QUERY_TOO_COMPLEX) of each
    operation. Fragment shapes are memoised: a fragment spread twice in a fragment spread
    twice ... is exponential to expand, and is measured here in linear time."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self._fragments: dict[str, tuple[int, int]] = {}

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        depth, fields = self._shape(node.selection_set, frozenset())
        if depth > MAX_DEPTH:
            self.report_error(
                _error(
                    f"the query nests fields deeper than {MAX_DEPTH}",
                    ErrorCode.QUERY_TOO_DEEP,
                    node,
                )
            )
        if fields > MAX_EXPANDED_FIELDS:
            self.report_error(
                _error(
                    f"the query selects more than {MAX_EXPANDED_FIELDS} fields once its "
                    "fragments are expanded",
                    ErrorCode.QUERY_TOO_COMPLEX,
                    node,
                )
            )

    def _shape(
        self, selection_set: SelectionSetNode | None, path: frozenset[str]
    ) -> tuple[int, int]:
        """(depth, fields) of a selection set, both capped just above their limits."""
        if selection_set is None:
            return 0, 0
        depth = fields = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                d, f = self._shape(selection.selection_set, path)
                d, f = d + 1, f + 1
            elif isinstance(selection, InlineFragmentNode):
                d, f = self._shape(selection.selection_set, path)
            else:
                assert isinstance(selection, FragmentSpreadNode)
                d, f = self._fragment(selection.name.value, path)
            depth = min(max(depth, d), MAX_DEPTH + 1)
            fields = min(fields + f, MAX_EXPANDED_FIELDS + 1)
        return depth, fields

    def _fragment(self, name: str, path: frozenset[str]) -> tuple[int, int]:
        if name in self._fragments:
            return self._fragments[name]
        fragment = self.context.get_fragment(name)
        # A cycle is reported by NoFragmentCyclesRule; here it only must not loop.
        if fragment is None or name in path:
            return 0, 0
        shape = self._shape(fragment.selection_set, path | {name})
        self._fragments[name] = shape
        return shape


class MaxAliasesRule(ASTValidationRule):
    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self._aliases = 0

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        if node.alias is not None:
            self._aliases += 1

    def leave_document(self, *_: Any) -> None:
        if self._aliases > MAX_ALIASES:
            self.report_error(
                _error(
                    f"the query has {self._aliases} aliases; at most {MAX_ALIASES} are allowed",
                    ErrorCode.TOO_MANY_ALIASES,
                )
            )


class NoIntrospectionRule(ValidationRule):
    def enter_field(self, node: FieldNode, *_: Any) -> None:
        type_ = get_named_type(self.context.get_type())
        if (type_ is not None and is_introspection_type(type_)) or node.name.value in (
            "__schema",
            "__type",
        ):
            self.report_error(
                _error("introspection is disabled", ErrorCode.INTROSPECTION_DISABLED, node)
            )


DOCUMENT_RULES: Final[tuple[type[ASTValidationRule], ...]] = (DocumentShapeRule, MaxAliasesRule)
NO_INTROSPECTION_RULES: Final[tuple[type[ASTValidationRule], ...]] = (
    *DOCUMENT_RULES,
    NoIntrospectionRule,
)


def validation_rules(*, introspection: bool) -> list[type[ASTValidationRule]]:
    """The rule classes for a schema; the same class objects on every call."""
    return list(DOCUMENT_RULES if introspection else NO_INTROSPECTION_RULES)


class QueryBudget:
    """The cost one HTTP request may still spend."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0

    def charge(self, cost: int) -> None:
        if self.spent + cost > self.limit:
            raise TesseraError(
                f"the query asks for too much: it would cost {self.spent + cost} "
                f"(cells × nodes), the budget is {self.limit}; ask fewer nodes, fewer or "
                "coarser breakdowns, or bound the age range or the index event's dates",
                code=ErrorCode.QUERY_TOO_COMPLEX,
                cost=self.spent + cost,
                budget=self.limit,
            )
        self.spent += cost


COHORT_FIELD: Final = "cohort"


@functools.lru_cache(maxsize=512)
def cohort_fields(query: str | None, operation_name: str | None = None) -> int:
    """The `cohort` fields the operation of a document would resolve: its root fields named
    `cohort`, inline fragments and fragment spreads included, counted once per response key
    (fields with the same alias are merged into one). A document that does not parse, or
    names no operation that would run, asks nothing (it fails before running)."""
    if not query:
        return 0
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError:
        return 0
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        chosen = operations[0] if len(operations) == 1 else None
    else:
        chosen = next(
            (o for o in operations if o.name is not None and o.name.value == operation_name),
            None,
        )
    if chosen is None:
        return 0
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    keys: set[str] = set()
    seen: set[str] = set()

    def collect(selection_set: SelectionSetNode) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value == COHORT_FIELD:
                    keys.add((selection.alias or selection.name).value)
            elif isinstance(selection, InlineFragmentNode):
                collect(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                # Each fragment once: spreading it again adds no response key.
                if name not in seen and name in fragments:
                    seen.add(name)
                    collect(fragments[name].selection_set)

    collect(chosen.selection_set)
    return len(keys)
