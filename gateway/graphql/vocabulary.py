"""The `concepts` field: which codes the nodes' vocabularies hold (`gateway.vocabulary`).

Open to researchers without a permit and free of privacy budget: each node answers from its
vocabulary tables only, which say nothing about any person. It costs the request's query
budget (codes × nodes), as cells do.
"""

from __future__ import annotations

from typing import Annotated

import strawberry
from pydantic import ValidationError

from gateway.graphql.context import GatewayContext
from gateway.graphql.enums import Jurisdiction, NodeStatus, Vocabulary
from gateway.graphql.inputs import CodeInput
from gateway.planner import check_code
from gateway.vocabulary import ConceptsOutcome, ask_concepts
from schema import wire
from schema.errors import ErrorCode, TesseraError
from schema.query import Code

Info = strawberry.Info[GatewayContext, None]


@strawberry.type(description="One OMOP concept, as its vocabulary names it.")
class ConceptRef:
    vocabulary: str = strawberry.field(description="Its OMOP vocabulary_id, e.g. ICD10GM.")
    code: str
    name: str
    standard: bool = strawberry.field(description="Whether it is an OMOP standard concept.")

    @classmethod
    def of(cls, ref: wire.ConceptRef) -> ConceptRef:
        return cls(vocabulary=ref.vocabulary, code=ref.code, name=ref.name, standard=ref.standard)


@strawberry.type(description="One code in one node's vocabulary.")
class NodeConcept:
    jurisdiction: Jurisdiction
    status: NodeStatus = strawberry.field(description="OK, or why the node did not answer.")
    error: str | None
    known: bool | None = strawberry.field(
        description="Whether the node's vocabulary holds the code (null unless OK). A question "
        "on a code it does not hold comes back UNKNOWN_CODE."
    )
    matches: list[ConceptRef] = strawberry.field(
        description="The concepts the code names, in every vocabulary it is looked up in."
    )
    descendant_count: int = strawberry.field(
        description="How many more concepts a question on the code counts (with descendants: "
        "by code prefix for ICD10 and ATC, through the OMOP hierarchy otherwise)."
    )
    descendants: list[ConceptRef] = strawberry.field(
        description=f"The first {wire.MAX_LISTED_DESCENDANTS}, by vocabulary and code."
    )


@strawberry.type(description="A code and what the nodes' vocabularies know of it.")
class ConceptInfo:
    vocabulary: Vocabulary
    code: str = strawberry.field(description="The code normalised (e11 → E11, E119 → E11.9).")
    to: str | None = strawberry.field(description="The end of the range, normalised, if any.")
    descendants: bool
    name: str | None = strawberry.field(description="Its name, from the first node that holds it.")
    known_by: list[Jurisdiction] = strawberry.field(
        description="The nodes whose vocabulary holds it."
    )
    by_jurisdiction: list[NodeConcept]


def _codes(codes: list[CodeInput]) -> list[Code]:
    if not 1 <= len(codes) <= wire.MAX_LOOKUP_CODES:
        raise TesseraError(
            f"ask about 1 to {wire.MAX_LOOKUP_CODES} codes at a time",
            code=ErrorCode.INVALID_ARGUMENT,
        )
    checked: list[Code] = []
    for i, given in enumerate(codes):
        data: dict[str, object] = {
            "vocabulary": given.vocabulary,
            "code": given.code,
            "descendants": given.descendants,
        }
        if given.to:
            data["to"] = given.to
        check_code(data, ("codes", i))
        try:
            checked.append(Code.model_validate(data))
        except ValidationError as error:
            # The model's own words (a range's ends out of order, say), never the code.
            problem = error.errors(include_url=False, include_input=False)[0]["msg"]
            raise TesseraError(
                f"codes[{i}] is not a valid code: {problem.removeprefix('Value error, ')}",
                code=ErrorCode.INVALID_CODE,
            ) from None
    return list(dict.fromkeys(checked))


def _by_code(code: Code, k: int, outcomes: list[ConceptsOutcome]) -> ConceptInfo:
    nodes: list[NodeConcept] = []
    name: str | None = None
    for outcome in outcomes:
        concept = outcome.concepts[k] if outcome.status is NodeStatus.OK else None
        if concept is not None and name is None and concept.matches:
            name = concept.matches[0].name
        nodes.append(
            NodeConcept(
                jurisdiction=outcome.jurisdiction,
                status=outcome.status,
                error=outcome.error,
                known=None if concept is None else concept.known,
                matches=[] if concept is None else [ConceptRef.of(r) for r in concept.matches],
                descendant_count=0 if concept is None else concept.descendant_count,
                descendants=[]
                if concept is None
                else [ConceptRef.of(r) for r in concept.descendants],
            )
        )
    return ConceptInfo(
        vocabulary=code.vocabulary,
        code=code.code,
        to=code.to,
        descendants=code.descendants,
        name=name,
        known_by=[n.jurisdiction for n in nodes if n.known],
        by_jurisdiction=nodes,
    )


async def resolve_concepts(
    info: Info,
    codes: list[CodeInput],
    jurisdictions: Annotated[
        list[Jurisdiction] | None,
        strawberry.argument(description="The nodes to ask (default: every member)."),
    ] = None,
) -> list[ConceptInfo]:
    context = info.context
    services = context.services
    context.principal()  # a researcher's valid token, as for any question
    client = services.concept_client
    if client is None:
        raise TesseraError(
            "this gateway cannot look codes up", code=ErrorCode.TEMPORARILY_UNAVAILABLE
        )
    asked = _codes(codes)
    members = services.federation.members
    wanted = list(dict.fromkeys(jurisdictions or members))
    unknown = [j for j in wanted if j not in members]
    if unknown:
        raise TesseraError(
            f"not in this federation: {', '.join(j.value for j in unknown)}",
            code=ErrorCode.UNKNOWN_JURISDICTION,
            unknown=[j.value for j in unknown],
        )
    context.budget.charge(len(asked) * len(wanted))
    outcomes = await ask_concepts(
        client, services.federation.nodes, wanted, asked, timeout_s=services.deadline_s
    )
    return [_by_code(code, k, outcomes) for k, code in enumerate(asked)]
