"""The gateway's side of vocabulary look-ups and of UNKNOWN_CODE answers: nothing a node sends
is trusted."""

from __future__ import annotations

from gateway.federation import NodeInfo
from gateway.nodes import check_response
from gateway.vocabulary import check_concepts
from schema.approval import Approval
from schema.codes import Jurisdiction, NodeStatus, Vocabulary
from schema.query import Code, CohortQuery, Criteria, EventCriterion
from schema.wire import (
    ConceptRef,
    ConceptsResponse,
    NodeConcept,
    NodeError,
    NodeRequest,
    NodeResponse,
    NodeTable,
    UnknownCode,
)

FR, DE = Jurisdiction.FR, Jurisdiction.DE
NODE = NodeInfo(FR, "tessera-node-fr", "http://fr")
E11 = Code(vocabulary=Vocabulary.ICD10, code="E11")
Z99 = Code(vocabulary=Vocabulary.ICD10, code="Z99.99")
REF = ConceptRef(vocabulary="CIM10", code="E11", name="Diabète de type 2", standard=False)


def concepts_body(*concepts: NodeConcept, jurisdiction: Jurisdiction = FR) -> bytes:
    response = ConceptsResponse(jurisdiction=jurisdiction, concepts=list(concepts))
    return response.model_dump_json().encode()


def test_a_vocabulary_answer_is_checked_against_the_codes_asked() -> None:
    known = NodeConcept(code=E11, known=True, matches=[REF])
    unknown = NodeConcept(code=Z99, known=False)
    ok = check_concepts(NODE, [E11, Z99], 200, concepts_body(known, unknown))
    assert ok.status is NodeStatus.OK
    assert ok.concepts == (known, unknown)
    for body, why in [
        (concepts_body(known), "other codes"),
        (concepts_body(unknown, known), "other codes"),
        (concepts_body(known, unknown, jurisdiction=DE), "another node"),
        (concepts_body(known, NodeConcept(code=Z99, known=False, matches=[REF])), "unknown"),
        (b'{"not": "tessera"}', "tessera/1"),
    ]:
        outcome = check_concepts(NODE, [E11, Z99], 200, body)
        assert outcome.status is NodeStatus.REJECTED
        assert outcome.error is not None
        assert why in outcome.error
    error = NodeError(code="BAD_SIGNATURE", message="no").model_dump_json().encode()
    failed = check_concepts(NODE, [E11], 401, error)
    assert (failed.status, failed.error) == (NodeStatus.ERROR, "BAD_SIGNATURE: no")


def _request() -> NodeRequest:
    criteria = Criteria(conditions=[EventCriterion(vocabulary=Vocabulary.ICD10, code="Z99.99")])
    return NodeRequest(
        query_id="q-00000001",
        request_id="DR-1",
        jurisdiction=FR,
        query=CohortQuery(criteria=criteria, reference_date="2026-01-01"),
        approval=Approval(
            request_id="DR-1",
            purpose="scientific_research",
            jurisdictions=[FR],
            datasets=["synthetic"],
        ),
        subject="researcher",
    )


def test_an_unknown_code_answer_names_its_codes_and_carries_no_tables() -> None:
    request = _request()
    unknown = NodeResponse(
        query_id=request.query_id,
        jurisdiction=FR,
        status=NodeStatus.UNKNOWN_CODE,
        unknown_codes=[UnknownCode(vocabulary=Vocabulary.ICD10, code="Z99.99")],
    )
    outcome = check_response(NODE, request, unknown, 1.0)
    assert outcome.status is NodeStatus.UNKNOWN_CODE
    assert outcome.measures == {}
    for bad in [
        unknown.model_copy(update={"unknown_codes": []}),
        unknown.model_copy(update={"tables": [NodeTable(by=(), cells=[])]}),
    ]:
        assert check_response(NODE, request, bad, 1.0).status is NodeStatus.REJECTED
