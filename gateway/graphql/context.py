"""What a resolver gets besides its arguments: the gateway's services, the caller's
credentials as sent (the bearer token and the permits, verified once, by the first field that
needs them), the caller's trace context and the cost budget of this HTTP request."""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry.context import Context
from opentelemetry.trace import Tracer

from gateway.audit import QueryTrail
from gateway.auth import Authenticator, Principal
from gateway.federation import Federation
from gateway.graphql.limits import QueryBudget
from gateway.nodes import NodeClient
from gateway.permits import PermitVerifier, Presented, permit_tokens
from gateway.ratelimit import RateGuard
from gateway.settings import DEFAULT_MAX_DEADLINE_S, PartialPools
from gateway.vocabulary import ConceptClient
from policies.live import LivePolicy
from policies.policy_set import PolicySet
from schema.audit.log import AuditLog


@dataclass(frozen=True, slots=True)
class Services:
    federation: Federation
    authenticator: Authenticator
    node_client: NodeClient
    # The policies in force, reloaded while the gateway runs: a query reads `current` once, at
    # its start, and uses that policy set throughout (`gateway.policies`). Each jurisdiction's
    # published disclosure profile comes from there, the one place the gateway reads them.
    policies: LivePolicy[PolicySet]
    permits: PermitVerifier
    rate_guard: RateGuard
    deadline_s: float
    # None: as long as the query's deadline.
    node_timeout_s: float | None
    max_query_cost: int
    audit: AuditLog
    tracer: Tracer
    max_deadline_s: float = DEFAULT_MAX_DEADLINE_S
    partial_pools: PartialPools = PartialPools.MARK
    # Vocabulary look-ups (`gateway.vocabulary`); None: this gateway cannot make them.
    concept_client: ConceptClient | None = None

    def trail(self) -> QueryTrail:
        return QueryTrail(log=self.audit, tracer=self.tracer, service=self.federation.gateway_id)


@dataclass(slots=True)
class GatewayContext:
    services: Services
    authorization: str | None = None
    # The `X-Tessera-Permit` header lines as received.
    permit_headers: tuple[str, ...] = ()
    # The caller's W3C trace context (`traceparent`), when it sent one.
    trace_parent: Context | None = None
    budget: QueryBudget = field(default_factory=lambda: QueryBudget(0))
    _principal: Principal | None = None
    _presented: Presented | None = None

    def principal(self) -> Principal:
        """The authenticated caller; raises UNAUTHENTICATED or a TOKEN_* error."""
        if self._principal is None:
            self._principal = self.services.authenticator.authenticate(self.authorization)
        return self._principal

    def presented(self) -> Presented:
        """The caller's permits, verified; raises TOO_MANY_PERMITS, or a TOKEN_* error for a
        permit no issuer the gateway trusts vouches for."""
        if self._presented is None:
            tokens = permit_tokens(self.permit_headers)
            self._presented = self.services.permits.present(self.principal(), tokens)
        return self._presented
