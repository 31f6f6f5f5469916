"""Each researcher's, and each application's, share of the questions in flight.

Every `cohort` field asks every node once, so the questions one HTTP request brings (every
field of every operation of a batch, every alias: counted from the documents before anything
runs) are admitted together, before the first of them fans out, or refused together at once
with TOO_MANY_IN_FLIGHT. A researcher has at most `per_researcher` questions in flight at a
time, and all researchers of one application (the permits' application, else their data
request) at most `per_application`. A question frees its place when its field is answered
or refused; whatever a request reserved and did not use is freed when the request ends.

The counts live in the gateway process: behind several replicas each keeps its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from schema.errors import ErrorCode, TesseraError


def too_many(message: str, *, asked: int, in_flight: int, share: int) -> TesseraError:
    details: dict[str, int] = {"asked": asked, "inFlight": in_flight, "share": share}
    if asked <= share:
        # Waiting for one's own questions to finish will let it through.
        details["retryAfter"] = 1
    return TesseraError(message, code=ErrorCode.TOO_MANY_IN_FLIGHT, **details)


@dataclass
class Reservation:
    """The places one request holds; `release` frees some as its questions end."""

    shares: FairShare
    researcher: str
    applications: tuple[str, ...]
    held: int

    def release(self, count: int = 1) -> None:
        count = min(count, self.held)
        if count <= 0:
            return
        self.held -= count
        self.shares.free(self.researcher, self.applications, count)

    def close(self) -> None:
        self.release(self.held)


def _nothing(scope: str) -> None:
    pass


@dataclass
class FairShare:
    per_researcher: int
    per_application: int
    researchers: Counter[str] = field(default_factory=Counter)
    applications: Counter[str] = field(default_factory=Counter)
    # Told of each refusal, by the share it would exceed (`researcher`, `application`): the
    # gateway's metrics count them.
    on_refused: Callable[[str], None] = _nothing

    def admit(self, researcher: str, applications: Iterable[str], count: int) -> Reservation:
        """Reserve `count` places for `researcher` and each of `applications`, or raise
        TOO_MANY_IN_FLIGHT without reserving any."""
        apps = tuple(sorted(set(applications)))
        held = self.researchers[researcher]
        if held + count > self.per_researcher:
            self.on_refused("researcher")
            raise too_many(
                f"this request asks {count} cohort questions and you have {held} in flight; "
                f"a researcher may have {self.per_researcher} in flight at a time (every "
                "cohort field of every operation of a batch counts): ask fewer at once, or "
                "wait for your other questions to be answered",
                asked=count,
                in_flight=held,
                share=self.per_researcher,
            )
        for app in apps:
            held = self.applications[app]
            if held + count > self.per_application:
                self.on_refused("application")
                raise too_many(
                    f"this request asks {count} cohort questions and the researchers of its "
                    f"application have {held} in flight; an application may have "
                    f"{self.per_application} in flight at a time: ask fewer at once, or wait",
                    asked=count,
                    in_flight=held,
                    share=self.per_application,
                )
        self.researchers[researcher] += count
        for app in apps:
            self.applications[app] += count
        return Reservation(self, researcher, apps, count)

    def free(self, researcher: str, applications: Iterable[str], count: int) -> None:
        pairs = [(self.researchers, researcher)]
        pairs += [(self.applications, app) for app in applications]
        for counter, key in pairs:
            counter[key] -= count
            if counter[key] <= 0:
                del counter[key]
