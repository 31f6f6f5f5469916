"""What a resolver gets besides its arguments: the gateway's services, the caller's
credentials as sent (the bearer token and the permits, verified once, by the first field that
needs them), the caller's trace context, the cost budget of this HTTP request and its place
in the researcher's share of the questions in flight (`gateway.fairshare`). A context is the
`Caller` its `cohort` fields' questions come from (`gateway.service`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry.context import Context

from gateway.auth import Principal
from gateway.fairshare import Reservation
from gateway.graphql.limits import QueryBudget
from gateway.permits import Presented, permit_tokens
from gateway.service import Services
from schema.errors import TesseraError


@dataclass(slots=True)
class GatewayContext:
    services: Services
    authorization: str | None = None
    # The `X-Tessera-Permit` header lines as received.
    permit_headers: tuple[str, ...] = ()
    # The caller's W3C trace context (`traceparent`), when it sent one.
    trace_parent: Context | None = None
    budget: QueryBudget = field(default_factory=lambda: QueryBudget(0))
    # The `cohort` fields of every operation of this HTTP request, counted before any runs.
    cohorts: int = 0
    _principal: Principal | None = None
    _presented: Presented | None = None
    _reservation: Reservation | None = None
    _unclaimed: int = 0
    _refused: TesseraError | None = None

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

    def admit_cohort(self) -> AdmittedField:
        """A place for one `cohort` field in the researcher's share of the questions in
        flight. The first field of the request reserves places for all of the request's
        fields at once (or raises TOO_MANY_IN_FLIGHT, and so does every other field); the
        others then take theirs from that reservation."""
        if self._refused is not None:
            # Refused together: a place freed meanwhile lets no field of it through.
            raise TesseraError(
                self._refused.message, code=self._refused.code, **self._refused.details
            )
        if self._reservation is None:
            principal, presented = self.principal(), self.presented()
            applications = [
                p.approval.application_id or f"{p.issuer} {p.approval.request_id}"
                for p in presented.permits
            ]
            count = max(self.cohorts, 1)
            try:
                self._reservation = self.services.fair_share.admit(
                    principal.subject, applications, count
                )
            except TesseraError as refused:
                self._refused = refused
                raise
            self._unclaimed = count
        if self._unclaimed == 0:
            # A field the count missed is admitted on its own, never let through unheld.
            reservation = self._reservation
            extra = self.services.fair_share.admit(
                reservation.researcher, reservation.applications, 1
            )
            reservation.held += extra.held
            self._unclaimed = 1
        self._unclaimed -= 1
        return AdmittedField(self._reservation)

    def charge(self, cost: int) -> None:
        """Spend `cost` of this request's budget (QUERY_TOO_COMPLEX beyond it)."""
        self.budget.charge(cost)

    def close(self) -> None:
        """Free what the request still holds (fields that never ran, or are done)."""
        if self._reservation is not None:
            self._reservation.close()


@dataclass(slots=True)
class AdmittedField:
    """One field's place; freed once, when the field is answered or refused."""

    reservation: Reservation
    freed: bool = False

    def free(self) -> None:
        if not self.freed:
            self.freed = True
            self.reservation.release(1)
