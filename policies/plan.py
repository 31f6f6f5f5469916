"""What is about to be asked, as the decision sees it: the same shape at the gateway (all
jurisdictions of a federated query) and at a connector (its own jurisdiction)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schema.codes import Jurisdiction
from schema.query import CohortQuery, FederatedQuery
from schema.wire import NodeRequest


@dataclass(frozen=True, slots=True)
class QueryPlan:
    request_id: str
    jurisdictions: tuple[Jurisdiction, ...]
    query: CohortQuery
    # The datasets the answer draws on, where that is known (a connector knows its own; the
    # gateway may not). None: not checked here.
    datasets: frozenset[str] | None = None

    @classmethod
    def of_federated(
        cls, federated: FederatedQuery, datasets: Iterable[str] | None = None
    ) -> QueryPlan:
        return cls(
            request_id=federated.request_id,
            jurisdictions=tuple(federated.jurisdictions),
            query=federated.query,
            datasets=None if datasets is None else frozenset(datasets),
        )

    @classmethod
    def of_node_request(
        cls, request: NodeRequest, datasets: Iterable[str] | None = None
    ) -> QueryPlan:
        return cls(
            request_id=request.request_id,
            jurisdictions=(request.jurisdiction,),
            query=request.query,
            datasets=None if datasets is None else frozenset(datasets),
        )
