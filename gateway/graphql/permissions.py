"""Which roles may ask which field: researchers ask cohort questions; compliance officers and
operators see the gateway's trust configuration. A field names its roles with `allow(...)`;
a caller without one of them is FORBIDDEN, one without a valid token gets the token's code."""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission

from gateway.graphql.context import GatewayContext
from schema.approval import Role
from schema.errors import ErrorCode, TesseraError


def allow(*roles: Role) -> type[BasePermission]:
    names = frozenset(r.value for r in roles)
    needed = " or ".join(sorted(names))

    class HasRole(BasePermission):
        message = f"the {needed} role is required"

        def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
            context: GatewayContext = info.context
            return bool(context.principal().roles & names)

        def on_unauthorized(self) -> None:
            raise TesseraError(self.message, code=ErrorCode.FORBIDDEN)

    HasRole.__name__ = f"Allow{''.join(r.value.title() for r in roles)}"
    return HasRole
