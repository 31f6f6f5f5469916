"""What a node's vocabulary holds: the `concepts` look-up (`schema.wire.ConceptsRequest`).

Read from the vocabulary tables only (`concept`, `concept_ancestor`), with the very code
lookup the compiler binds queries with (`connectors.compiler.concepts`), so what it says a
code reaches is what a question on that code counts. Nothing here reads a person's record:
which codes a vocabulary holds is public (OMOP vocabularies are published), so the answer
needs no permit, charges no privacy budget and is not noised.
"""

from __future__ import annotations

from collections.abc import Sequence

from connectors.compiler import ConceptResolver, ConceptSet, Dialect, Row, Statement
from connectors.compiler.concepts import Execute, code_forms, compile_concept_names
from schema.codes import LOOKUP_VOCABULARIES
from schema.query import Code
from schema.wire import MAX_LISTED_DESCENDANTS, ConceptRef, NodeConcept

MAX_MATCHES = 16


def _ref(row: Row) -> ConceptRef:
    _, vocabulary, code, name, standard = row
    return ConceptRef(
        vocabulary=str(vocabulary)[:32],
        code=str(code)[:64],
        name=str(name)[:256],
        standard=standard == "S",
    )


async def look_up(
    codes: Sequence[Code], resolver: ConceptResolver, execute: Execute, *, dialect: Dialect
) -> list[NodeConcept]:
    """Each code as the node's vocabulary knows it (or does not)."""
    answers: list[NodeConcept] = []
    for code in codes:
        concept_set = ConceptSet.of(code)
        resolved = await resolver.resolve(concept_set)
        if not resolved.known:
            answers.append(NodeConcept(code=code, known=False))
            continue
        named = await _names(execute, resolved.matched, MAX_MATCHES, dialect)
        # The code's own concepts first (its spelling, in the vocabularies it is looked up
        # in); concepts it names by prefix are descendants, as in a query.
        own = [r for r in named if _is_own(r, concept_set)]
        descendants = sorted(set(resolved.ids) - {int(r[0]) for r in own})
        listed = await _names(execute, descendants, MAX_LISTED_DESCENDANTS, dialect)
        answers.append(
            NodeConcept(
                code=code,
                known=True,
                matches=[_ref(r) for r in own],
                descendant_count=len(descendants),
                descendants=[_ref(r) for r in listed],
            )
        )
    return answers


def _is_own(row: Row, concept_set: ConceptSet) -> bool:
    vocabulary, code = str(row[1]), str(row[2])
    return vocabulary in LOOKUP_VOCABULARIES[concept_set.vocabulary] and code in code_forms(
        concept_set
    )


async def _names(execute: Execute, ids: Sequence[int], limit: int, dialect: Dialect) -> list[Row]:
    if not ids:
        return []
    statement: Statement = compile_concept_names(ids, limit=limit, dialect=dialect)
    return await execute(statement)
