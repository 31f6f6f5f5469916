"""Planning: one researcher question becomes one validated `CohortQuery` and one `NodeRequest`
per node, whatever the number of breakdowns asked (see `gateway.graphql.selection`), and what
it costs against the request's budget (`cohort_cost`).

Codes are checked first, so that a malformed code gets its own error code (INVALID_CODE) and
the path of the offending field; the query model does the rest of the validating."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from pydantic import ValidationError

from policies.domain import table_cells
from schema.approval import Approval
from schema.codes import (
    CODE_PATTERNS,
    AgeAt,
    Jurisdiction,
    MeasureKind,
    NoiseLevel,
    Vocabulary,
    normalise_code,
)
from schema.errors import ErrorCode, TesseraError
from schema.pooling import PoolingRequest
from schema.query import RATES, STATISTICS, Breakdown, CohortQuery, FederatedQuery
from schema.wire import MAX_REQUEST_BYTES, NodeRequest, node_dimensions
from trust.tokens import MAX_TOKEN_BYTES

MAX_PROBLEMS_SHOWN: Final = 3
MAX_PROBLEM_CHARS: Final = 160

# Model field names as the researcher wrote them in GraphQL.
_FIELD_NAMES: Final = {"tables": "breakdown", "request_id": "request"}
_EVENT_GROUPS: Final = ("conditions", "drugs", "measurements")


@dataclass(frozen=True, slots=True)
class Plan:
    query_id: str
    request_id: str
    jurisdictions: tuple[Jurisdiction, ...]
    reference_date: dt.date
    # Breakdowns as asked, the overall total `()` first; JURISDICTION may appear in them.
    tables: tuple[Breakdown, ...]
    # What every node computes: the same criteria, breakdowns without JURISDICTION.
    node_query: CohortQuery
    federated: FederatedQuery
    # The researcher, as authenticated: every permit names them.
    subject: str
    noise: NoiseLevel = NoiseLevel.STANDARD

    def node_request(
        self,
        jurisdiction: Jurisdiction,
        approval: Approval,
        pooling: PoolingRequest | None = None,
    ) -> NodeRequest:
        """The request for one node, under the approval of that node's own permit: its data
        request id is the permit's (the question's `request_id` may name the application);
        with `pooling`, its part in a pooled round."""
        return NodeRequest(
            query_id=self.query_id,
            request_id=approval.request_id,
            jurisdiction=jurisdiction,
            query=self.node_query,
            approval=approval,
            subject=self.subject,
            noise=self.noise,
            pooling=pooling,
        )


def default_reference_date(today: dt.date | None = None) -> dt.date:
    """1 January of the current (UTC) year: ages are then stable for a whole year, so the same
    question asked twice in a year gets the same answer."""
    today = today or dt.datetime.now(dt.UTC).date()
    return dt.date(today.year, 1, 1)


def plan_query(
    *,
    members: Sequence[Jurisdiction],
    subject: str,
    request_id: str,
    criteria: Mapping[str, Any],
    jurisdictions: Sequence[Jurisdiction] | None,
    reference_date: dt.date,
    tables: Sequence[Breakdown],
    query_id: str | None = None,
    noise: NoiseLevel = NoiseLevel.STANDARD,
    age_at: AgeAt | None = None,
    index: Mapping[str, Any] | None = None,
    variable: Mapping[str, Any] | None = None,
    summary: bool = True,
    outcome: Mapping[str, Any] | None = None,
    survival: Mapping[str, Any] | None = None,
) -> Plan:
    """Validate a question against the query model and the federation.

    Raises `TesseraError` with INVALID_CODE for a malformed code, UNKNOWN_JURISDICTION for a
    jurisdiction outside the federation and INVALID_CRITERIA for anything the query model
    rejects.
    """
    check_codes(criteria)
    if index is not None:
        check_index_codes(index)
    if outcome is not None and isinstance(event := outcome.get("event"), Mapping):
        check_spec_codes(event, ("outcome", "event"))
    asked = list(members) if jurisdictions is None else list(jurisdictions)
    unknown = [j for j in dict.fromkeys(asked) if j not in members]
    if unknown:
        raise TesseraError(
            f"not in this federation: {', '.join(j.value for j in unknown)}; "
            f"members: {', '.join(j.value for j in members)}",
            code=ErrorCode.UNKNOWN_JURISDICTION,
            unknown=[j.value for j in unknown],
            members=[j.value for j in members],
        )
    try:
        federated = FederatedQuery.model_validate(
            {
                "request_id": request_id,
                "jurisdictions": asked,
                "query": {
                    "criteria": criteria,
                    "reference_date": reference_date,
                    "age_at": age_at,
                    "tables": list(tables),
                    **({} if index is None else {"index": index}),
                    **_measures(_statistics(variable, summary=summary), _rates(outcome)),
                    **({} if survival is None else {"survival": survival}),
                },
            }
        )
        node_query = CohortQuery(
            criteria=federated.query.criteria,
            reference_date=federated.query.reference_date,
            age_at=federated.query.age_at,
            index=federated.query.index,
            tables=[node_dimensions(t) for t in federated.query.tables],
            measures=federated.query.measures,
            variable=federated.query.variable,
            outcome=federated.query.outcome,
            survival=federated.query.survival,
        )
    except ValidationError as e:
        raise invalid_criteria(e) from None
    plan = Plan(
        query_id=query_id or str(uuid.uuid4()),
        request_id=federated.request_id,
        jurisdictions=tuple(federated.jurisdictions),
        reference_date=federated.query.reference_date,
        tables=tuple(federated.query.tables),
        node_query=node_query,
        federated=federated,
        subject=subject,
        noise=noise,
    )
    # The query model allows more codes than one node request may carry. Every node gets the
    # same question; what differs is its permit's approval, which came in a token of at most
    # MAX_TOKEN_BYTES: the question must leave room for it.
    size = len(orjson.dumps(node_query.model_dump(mode="json"))) + MAX_TOKEN_BYTES
    if size > MAX_REQUEST_BYTES:
        raise TesseraError(
            f"criteria: the question is too large ({size} bytes encoded, at most "
            f"{MAX_REQUEST_BYTES}); use fewer codes",
            code=ErrorCode.INVALID_CRITERIA,
        )
    return plan


def _statistics(variable: Mapping[str, Any] | None, *, summary: bool) -> dict[str, Any]:
    """The measures and variable of a question about `variable` (none without one): each
    cell's count, and the variable's statistics when its `summary` is asked (else the
    variable is there for its bins alone)."""
    if variable is None:
        return {}
    if not summary:
        return {"variable": variable}
    kinds = (MeasureKind.PERSON_COUNT, *STATISTICS)
    return {"measures": [{"kind": k} for k in kinds], "variable": variable}


def _measures(*parts: dict[str, Any]) -> dict[str, Any]:
    """The question's parts put together, their measures each once, in the order asked (a
    variable's summary and an incidence rate may be asked in one question)."""
    merged: dict[str, Any] = {}
    kinds: dict[Any, None] = {}
    for part in parts:
        merged |= {k: v for k, v in part.items() if k != "measures"}
        kinds |= dict.fromkeys(m["kind"] for m in part.get("measures", ()))
    if kinds:
        merged["measures"] = [{"kind": k} for k in kinds]
    return merged


def _rates(outcome: Mapping[str, Any] | None) -> dict[str, Any]:
    """The measures and outcome of a question asking an incidence rate (none without one):
    each cell's count of persons, its events and its days at risk."""
    if outcome is None:
        return {}
    kinds = (MeasureKind.PERSON_COUNT, *RATES)
    return {"measures": [{"kind": k} for k in kinds], "outcome": outcome}


def cohort_cost(plan: Plan) -> int:
    """Nodes asked × (the total + the cells of every breakdown), each dimension bounded by
    the criteria (an age range bounds the age bands, a date window the calendar years:
    `policies.domain.table_cells`)."""
    per_node = sum(table_cells(table, plan.node_query) for table in plan.node_query.tables)
    return len(plan.jurisdictions) * per_node


def check_codes(criteria: Mapping[str, Any], loc: tuple[int | str, ...] = ("criteria",)) -> None:
    """INVALID_CODE, naming the field, for the first code of `criteria` (the query model's
    `Criteria` as plain data) that is malformed once normalised; never quotes the code. What
    is not shaped like a criterion is left for the query model to reject."""
    for name in _EVENT_GROUPS:
        events = criteria.get(name)
        for i, event in enumerate(events if isinstance(events, list) else ()):
            if isinstance(event, Mapping):
                check_code(event, (*loc, name, i))
    relative = criteria.get("relative")
    for i, criterion in enumerate(relative if isinstance(relative, list) else ()):
        if isinstance(criterion, Mapping) and isinstance(criterion.get("event"), Mapping):
            check_spec_codes(criterion["event"], (*loc, "relative", i, "event"))
    groups = criteria.get("any_of")
    for i, group in enumerate(groups if isinstance(groups, list) else ()):
        if isinstance(group, Mapping):
            check_codes(group, (*loc, "any_of", i))


def check_index_codes(index: Mapping[str, Any]) -> None:
    """INVALID_CODE, naming the field, for the first malformed code of an index event."""
    events = index.get("events")
    for i, event in enumerate(events if isinstance(events, list) else ()):
        if isinstance(event, Mapping):
            check_spec_codes(event, ("index", "events", i))


def check_spec_codes(spec: Mapping[str, Any], loc: tuple[int | str, ...]) -> None:
    for name in ("codes", "excluded"):
        codes = spec.get(name)
        for i, code in enumerate(codes if isinstance(codes, list) else ()):
            if isinstance(code, Mapping):
                check_code(code, (*loc, name, i))


def check_code(event: Mapping[str, Any], loc: tuple[int | str, ...]) -> None:
    """INVALID_CODE, naming the field, if the code (or the end of its range) of `event` (a
    criterion or a code as plain data) is malformed once normalised."""
    vocabulary = event.get("vocabulary")
    if not isinstance(vocabulary, Vocabulary):
        return
    for field in ("code", "to"):  # `to`: the end of a code range
        code = event.get(field)
        if isinstance(code, str) and not CODE_PATTERNS[vocabulary].fullmatch(
            normalise_code(vocabulary, code)
        ):
            path = _path((*loc, field))
            raise TesseraError(
                f"{path} is not a well-formed {vocabulary.value} code",
                code=ErrorCode.INVALID_CODE,
                path=path,
            )


def invalid_criteria(error: ValidationError) -> TesseraError:
    """INVALID_CRITERIA naming each field and its problem, never the offending input."""
    problems = [
        {"path": _path(e["loc"]), "message": _problem(e["msg"])}
        for e in error.errors(include_url=False, include_input=False)
    ]
    shown = problems[:MAX_PROBLEMS_SHOWN]
    message = "; ".join(f"{p['path']}: {p['message']}" for p in shown)
    if len(problems) > len(shown):
        message += f" (and {len(problems) - len(shown)} more)"
    return TesseraError(message, code=ErrorCode.INVALID_CRITERIA, problems=shown)


def _path(loc: tuple[int | str, ...]) -> str:
    # The query model nests the cohort under `query`; GraphQL does not.
    if loc[:1] == ("query",):
        loc = loc[1:]
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = _FIELD_NAMES.get(part) or _camel(part)
            out += f".{name}" if out else name
    return out or "query"


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


def _problem(message: str) -> str:
    message = message.removeprefix("Value error, ")
    if len(message) > MAX_PROBLEM_CHARS:
        message = message[: MAX_PROBLEM_CHARS - 1] + "…"
    return message
