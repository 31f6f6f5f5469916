"""Reading an ATLAS export: a file, its text, or its parsed JSON, as ATLAS's "Export" tab
writes it (the expression itself) or as its WebAPI returns it (`{"name", "expression"}`, the
expression sometimes as a string)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tessera.atlas.circe import CohortExpression
from tessera.atlas.problems import AtlasProblem, AtlasRefused, Refusal, json_path
from tessera.atlas.translate import AtlasCohort, translate

Source = Path | str | Mapping[str, Any]


def _parsed(source: Source) -> Any:
    if isinstance(source, Mapping):
        return source
    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise AtlasRefused(
            [Refusal(AtlasProblem.MALFORMED, "", f"not JSON (line {e.lineno}: {e.msg})")]
        ) from None


def read_definition(source: Source) -> CohortExpression:
    """The definition as typed structures; `AtlasRefused` (MALFORMED, with the path of each
    element of the wrong type or missing) when it is not a cohort definition."""
    data = _parsed(source)
    if isinstance(data, Mapping) and "PrimaryCriteria" not in data and "expression" in data:
        inner = data["expression"]
        data = _parsed(inner) if isinstance(inner, str) else inner
    if not isinstance(data, Mapping):
        raise AtlasRefused([Refusal(AtlasProblem.MALFORMED, "", "not a JSON object")])
    try:
        return CohortExpression.model_validate(data)
    except ValidationError as e:
        raise AtlasRefused(
            [
                Refusal(AtlasProblem.MALFORMED, json_path(error["loc"]), error["msg"])
                for error in e.errors()
            ]
        ) from None


def import_definition(source: Source) -> AtlasCohort:
    """The definition's translation; `AtlasRefused` with every reason it has none."""
    found = translate(read_definition(source))
    if isinstance(found, AtlasCohort):
        return found
    raise AtlasRefused(found)
