"""`issuers`: whose researcher tokens this gateway trusts, and whether it holds their keys
now. For compliance officers (who is trusted) and operators (is key refresh working)."""

from __future__ import annotations

import strawberry

from gateway.graphql.context import GatewayContext
from trust.keysource import RefreshingKeys
from trust.tokens import TrustedIssuer


@strawberry.type(description="An HDAB whose researcher tokens this gateway accepts.")
class TrustedIssuerInfo:
    iss: str
    algorithms: list[str]
    key_ids: list[str] = strawberry.field(description="The key ids trusted now (public).")
    keys_loaded: bool = strawberry.field(description="False: every token of it is refused.")
    refreshed: bool = strawberry.field(description="Whether its keys are fetched and refreshed.")
    last_refresh_error: str | None

    @classmethod
    def of(cls, issuer: TrustedIssuer) -> TrustedIssuerInfo:
        keys = issuer.keys.key_set()
        refreshing = isinstance(issuer.keys, RefreshingKeys)
        return cls(
            iss=issuer.iss,
            algorithms=list(issuer.algorithms),
            key_ids=list(keys.kids),
            keys_loaded=bool(keys),
            refreshed=refreshing,
            last_refresh_error=issuer.keys.last_error
            if isinstance(issuer.keys, RefreshingKeys)
            else None,
        )


def trusted_issuers(info: strawberry.Info[GatewayContext, None]) -> list[TrustedIssuerInfo]:
    issuers = info.context.services.federation.issuers.values()
    return [TrustedIssuerInfo.of(issuer) for issuer in issuers]
