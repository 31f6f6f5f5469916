"""`issuers`: whose researcher tokens this gateway trusts, and whether it holds their keys
now. For compliance officers (who is trusted) and operators (is key refresh working)."""

from __future__ import annotations

import strawberry

from gateway.graphql.context import GatewayContext
from gateway.graphql.enums import Jurisdiction
from trust.keysource import RefreshingKeys
from trust.tokens import TrustedIssuer


@strawberry.type(
    description="An issuer whose tokens this gateway accepts: an HDAB, or an identity provider."
)
class TrustedIssuerInfo:
    iss: str
    permits_for: list[Jurisdiction] | None = strawberry.field(
        description="The jurisdictions its permits decide (its HDAB's country); empty: identity "
        "only, never a permit; null: any jurisdiction its permits cover (a shared issuer)."
    )
    algorithms: list[str]
    key_ids: list[str] = strawberry.field(description="The key ids trusted now (public).")
    keys_loaded: bool = strawberry.field(description="False: every token of it is refused.")
    refreshed: bool = strawberry.field(description="Whether its keys are fetched and refreshed.")
    last_refresh_error: str | None

    @classmethod
    def of(
        cls, issuer: TrustedIssuer, permits_for: frozenset[Jurisdiction] | None
    ) -> TrustedIssuerInfo:
        keys = issuer.keys.key_set()
        refreshing = isinstance(issuer.keys, RefreshingKeys)
        return cls(
            iss=issuer.iss,
            permits_for=None if permits_for is None else sorted(permits_for, key=_order),
            algorithms=list(issuer.algorithms),
            key_ids=list(keys.kids),
            keys_loaded=bool(keys),
            refreshed=refreshing,
            last_refresh_error=issuer.keys.last_error
            if isinstance(issuer.keys, RefreshingKeys)
            else None,
        )


def trusted_issuers(info: strawberry.Info[GatewayContext, None]) -> list[TrustedIssuerInfo]:
    federation = info.context.services.federation
    return [
        TrustedIssuerInfo.of(issuer, federation.issuer_jurisdictions.get(issuer.iss))
        for issuer in federation.issuers.values()
    ]


_ORDER = {j: i for i, j in enumerate(Jurisdiction)}


def _order(jurisdiction: Jurisdiction) -> int:
    return _ORDER[jurisdiction]
