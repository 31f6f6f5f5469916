"""What a resolver gets besides its arguments: the gateway's services and the caller's
credentials, as sent (verified only by the fields that need them)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.auth import Authenticator
from gateway.federation import Federation
from gateway.nodes import NodeClient
from policies.policy_set import PolicySet


@dataclass(frozen=True, slots=True)
class Services:
    federation: Federation
    authenticator: Authenticator
    node_client: NodeClient
    policies: PolicySet
    deadline_s: float
    node_timeout_s: float


@dataclass(frozen=True, slots=True)
class GatewayContext:
    services: Services
    authorization: str | None = None
