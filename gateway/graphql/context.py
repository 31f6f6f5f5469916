"""What a resolver gets besides its arguments: the gateway's services and the caller's
credentials, as sent (verified only by the fields that need them)."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.context import Context
from opentelemetry.trace import Tracer

from gateway.audit import QueryTrail
from gateway.auth import Authenticator
from gateway.federation import Federation
from gateway.nodes import NodeClient
from gateway.settings import DEFAULT_MAX_DEADLINE_S, PartialPools
from policies.policy_set import PolicySet
from schema.audit.log import AuditLog


@dataclass(frozen=True, slots=True)
class Services:
    federation: Federation
    authenticator: Authenticator
    node_client: NodeClient
    # The effective policies: each jurisdiction's published disclosure profile comes from
    # here (`policies.profile`), the one place the gateway reads them.
    policies: PolicySet
    deadline_s: float
    # None: as long as the query's deadline.
    node_timeout_s: float | None
    audit: AuditLog
    tracer: Tracer
    max_deadline_s: float = DEFAULT_MAX_DEADLINE_S
    partial_pools: PartialPools = PartialPools.MARK

    def trail(self) -> QueryTrail:
        return QueryTrail(log=self.audit, tracer=self.tracer, service=self.federation.gateway_id)


@dataclass(frozen=True, slots=True)
class GatewayContext:
    services: Services
    authorization: str | None = None
    # The caller's W3C trace context (`traceparent`), when it sent one.
    trace_parent: Context | None = None
