"""ATLAS (OHDSI Circe) cohort definitions as Tessera questions: `import_definition` reads an
ATLAS export and translates the subset Tessera can count exactly (`docs/atlas-import.md`), or
raises `AtlasRefused` listing every element it cannot, each by its JSON path.

    cohort = import_definition(Path("definition.json"))
    cohort.index, cohort.criteria        # CohortQuery.index, CohortQuery.criteria
"""

from __future__ import annotations

from tessera.atlas.problems import AtlasProblem, AtlasRefused, Note, Refusal
from tessera.atlas.reading import import_definition, read_definition
from tessera.atlas.translate import AtlasCohort, translate

__all__ = [
    "AtlasCohort",
    "AtlasProblem",
    "AtlasRefused",
    "Note",
    "Refusal",
    "import_definition",
    "read_definition",
    "translate",
]
