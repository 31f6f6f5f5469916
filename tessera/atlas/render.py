"""A translated definition as the gateway's GraphQL takes it: the `index` and `criteria`
arguments of `cohort`, as variables (JSON) or as input literals to paste into a document.
Field names are the query model's in camelCase, enum values their GraphQL names (`RXNORM`),
and what is absent or empty is left out (the API's defaults are the query model's)."""

from __future__ import annotations

import datetime as dt
import json
from enum import Enum
from typing import Any

from pydantic import BaseModel

from tessera.atlas.translate import AtlasCohort


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def _plain(value: Any) -> Any:
    """The model's value with camelCase keys, enums by name, nothing absent or empty."""
    if isinstance(value, BaseModel):
        value = {k: getattr(value, k) for k in value.model_dump(exclude_none=True)}
    if isinstance(value, dict):
        out = {_camel(k): _plain(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != []}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def variables(cohort: AtlasCohort) -> dict[str, Any]:
    """`{"index": ..., "criteria": ...}`: the variables `$index: IndexEventInput` and
    `$criteria: CriteriaInput` of a cohort question."""
    return {"index": _plain(cohort.index), "criteria": _plain(cohort.criteria)}


def _literal(value: Any, *, enum: bool = False) -> str:
    if isinstance(value, dict):
        fields = ", ".join(f"{k}: {_literal(v, enum=_is_enum(k))}" for k, v in value.items())
        return f"{{ {fields} }}" if fields else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v, enum=enum) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and not enum:
        return json.dumps(value)
    return str(value)


# The input fields whose values are GraphQL enums (written bare).
_ENUM_FIELDS = frozenset({"vocabulary", "domain", "visit", "occurrence", "sex"})


def _is_enum(key: str) -> bool:
    return key in _ENUM_FIELDS


def graphql_arguments(cohort: AtlasCohort) -> str:
    """`index: {...}` and `criteria: {...}` as GraphQL input literals, one a line, with the
    notes on what was left aside as comments."""
    found = variables(cohort)
    lines = [f"# {note}" for note in cohort.notes]
    lines.append(f"index: {_literal(found['index'])}")
    lines.append(f"criteria: {_literal(found['criteria'])}")
    return "\n".join(lines) + "\n"


def json_variables(cohort: AtlasCohort) -> str:
    return json.dumps(variables(cohort), indent=2) + "\n"


# What a document asks for: the pooled count and each country's answer, as the examples do.
_SELECTION = """    queryId
    traceId
    count { value status sd reasons { rule jurisdiction message } }
    byJurisdiction {
      jurisdiction status latencyMs count { value status sd }
      privacy { questionRho spentRho capRho }
    }"""


def graphql_document(cohort: AtlasCohort, *, request: str, title: str) -> str:
    """A whole cohort question, for `tessera query FILE` or the query console: the pooled
    count and each country's answer, under the data request `request`."""
    found = variables(cohort)
    notes = "".join(f"# {note}\n" for note in cohort.notes)
    return (
        f"# {title}\n{notes}"
        "query AtlasCohort {\n"
        "  cohort(\n"
        f"    request: {json.dumps(request)}\n"
        f"    index: {_literal(found['index'])}\n"
        f"    criteria: {_literal(found['criteria'])}\n"
        "  ) {\n"
        f"{_SELECTION}\n"
        "  }\n"
        "}\n"
    )
