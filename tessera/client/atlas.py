"""ATLAS cohort definitions in the client: `criteria_from_atlas` translates an ATLAS export
(a path, its JSON text, or the parsed dict) into the pieces of a question, or raises
`InvalidQuery` (code `INVALID_CRITERIA`) listing every part Tessera cannot translate, each by
its JSON path (`error.details["refusals"]`: `code`, `path`, `message` each).

    cohort = criteria_from_atlas(Path("definition.json"))
    cohort.index, cohort.criteria  # the query model's IndexEvent and Criteria
    cohort.arguments()             # {"index": ..., "criteria": ...}, as GraphQL inputs
    client.cohort(**cohort.arguments(), by=["SEX", "AGE_BAND_10"]).frame()
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from schema.errors import ErrorCode
from tessera.atlas import AtlasCohort, AtlasRefused, import_definition
from tessera.client.errors import InvalidQuery


def criteria_from_atlas(definition: Path | str | Mapping[str, Any]) -> AtlasCohort:
    """The definition's index event and criteria (`docs/atlas-import.md` says which parts of
    ATLAS are translated, refused or left aside). A `str` is the JSON text; a file is a
    `Path`."""
    try:
        return import_definition(definition)
    except AtlasRefused as refused:
        details = {
            "refusals": [
                {"code": r.code.value, "path": r.path, "message": r.message}
                for r in refused.refusals
            ]
        }
        raise InvalidQuery(str(refused), code=ErrorCode.INVALID_CRITERIA, details=details) from None
