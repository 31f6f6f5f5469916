"""What an audit entry holds, and how it joins the chain.

An entry's `body` is the canonical JSON (sorted keys, no spaces, UTF-8) of its format version,
chain, position, the previous entry's hash and the record; its `hash` is the SHA-256 of the
body. Each body names the previous hash, so each entry commits to the whole chain before it.

Never recorded: a cell value, an unprotected count, the researcher's criteria or any free text
of theirs. A result is recorded by its hash only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final

import orjson
from pydantic import Field

from schema.approval import ApplicantId, RequestId
from schema.codes import Jurisdiction, NodeStatus
from schema.errors import ErrorCode
from schema.model import Contract

FORMAT_VERSION: Final = 1
GENESIS: Final = "0" * 64
TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"

Hash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
RuleId = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{1,63}$")]
# Fixed width, UTC: ordering the text orders the times (the stores filter on it).
Timestamp = Annotated[str, Field(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")]
Micros = Annotated[int, Field(ge=0)]


def format_time(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return moment.astimezone(dt.UTC).strftime(TIME_FORMAT)


def utc_now() -> str:
    return format_time(dt.datetime.now(dt.UTC))


class Decision(StrEnum):
    """What came of a query, as a whole."""

    ANSWERED = "ANSWERED"  # every jurisdiction asked answered
    PARTIAL = "PARTIAL"  # an answer was released, but some jurisdiction denied or failed
    # Nothing was released, or every jurisdiction denied the question (error_code says why).
    REFUSED = "REFUSED"


class NodeDecision(StrEnum):
    ALLOWED = "ALLOWED"
    DENIED = "DENIED"


class StepTiming(Contract):
    name: Annotated[str, Field(pattern=r"^[a-z_.]{1,64}$")]
    elapsed_us: Micros


class NodeStep(Contract):
    """One jurisdiction's part of a query, as the gateway saw it."""

    jurisdiction: Jurisdiction
    decision: NodeDecision
    status: NodeStatus
    latency_us: Micros | None = None
    node_elapsed_us: Micros | None = None
    rules: list[RuleId] = []
    cells_suppressed: Annotated[int, Field(ge=0)] = 0
    optout_register_version: str | None = None
    # Hash of the node's answer (`released_hash`): equals the `result_hash` of the node's own
    # entry for this query, so the two trails can be checked against each other.
    response_hash: Hash | None = None
    error_code: ErrorCode | None = None


class PermitRecord(Contract):
    """The permit a jurisdiction's part of a query was decided on: which HDAB (`issuer`)
    issued it, under which data request, for which applicant organisation. Never the token."""

    jurisdiction: Jurisdiction
    issuer: Annotated[str, Field(min_length=1, max_length=256)]
    request_id: RequestId
    application_id: RequestId | None = None
    organisation: Annotated[str, Field(max_length=256)] | None = None


class AuditRecord(Contract):
    """What a service records about one query before it releases the answer."""

    time: Timestamp
    service: Annotated[str, Field(min_length=1, max_length=128)]
    query_id: str | None = None
    trace_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None
    # The researcher (token subject) and the issuer that vouched for them. At a connector,
    # as forwarded by the gateway named in `caller`.
    principal: str | None = None
    issuer: str | None = None
    caller: str | None = None
    approval: str | None = None
    # Who asked, as the permits name them (researcher = their `sub`, organisation = their
    # applicant), and per jurisdiction the permit its part was decided on: at the gateway one
    # per jurisdiction that had one, at a connector the permit it verified itself. Entries
    # written before permits existed have neither (None, []).
    applicant: ApplicantId | None = None
    permits: Annotated[list[PermitRecord], Field(max_length=32)] = []
    purpose: str | None = None
    datasets: list[str] = []
    jurisdictions: Annotated[list[Jurisdiction], Field(max_length=32)] = []
    decision: Decision
    error_code: ErrorCode | None = None
    nodes: Annotated[list[NodeStep], Field(max_length=32)] = []
    rules: list[RuleId] = []
    cells_suppressed: Annotated[int, Field(ge=0)] = 0
    optout_register_version: str | None = None
    sql_fingerprint: str | None = None
    # Hash of the question (criteria, reference date, tables): the same at the gateway and at
    # every node, and equal for repeated questions.
    query_hash: Hash | None = None
    result_hash: Hash | None = None
    steps: list[StepTiming] = []


def canonical_json(data: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 as is: equal data, equal text. Made for the output
    of pydantic's JSON mode (`model_dump(mode="json")`), which has already turned NaN and
    infinities into null; orjson would do the same with any left, rather than write text
    no JSON parser reads."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def released_hash(data: Any) -> str:
    """The hash of a released result (plain JSON data, e.g. `model.model_dump(mode="json")`)."""
    return digest(canonical_json(data))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A sealed record: its place in the chain, its canonical body and the body's hash."""

    chain: str
    seq: int
    prev: str
    hash: str
    body: str
    record: AuditRecord


def seal(chain: str, seq: int, prev: str, record: AuditRecord) -> AuditEntry:
    body = canonical_json(
        {
            "v": FORMAT_VERSION,
            "chain": chain,
            "seq": seq,
            "prev": prev,
            "record": record.model_dump(mode="json"),
        }
    )
    return AuditEntry(chain=chain, seq=seq, prev=prev, hash=digest(body), body=body, record=record)


# The order of `StoredEntry`'s fields, as the stores name their columns.
STORED_COLUMNS: Final = (
    "chain, seq, hash, prev, time, query_id, principal, approval, decision, jurisdictions, body"
)
HEAD_COLUMNS: Final = "chain, seq, hash, signed_at, key_id, signature"


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry as a store holds it: the body, its hash, and copies of a few fields in their
    own columns so that they can be searched. Verification checks the copies too."""

    chain: str
    seq: int
    hash: str
    prev: str
    time: str
    query_id: str | None
    principal: str | None
    approval: str | None
    decision: str
    jurisdictions: str
    body: str

    @classmethod
    def of(cls, entry: AuditEntry) -> StoredEntry:
        record = entry.record
        return cls(
            chain=entry.chain,
            seq=entry.seq,
            hash=entry.hash,
            prev=entry.prev,
            time=record.time,
            query_id=record.query_id,
            principal=record.principal,
            approval=record.approval,
            decision=record.decision.value,
            jurisdictions=jurisdictions_column(record.jurisdictions),
            body=entry.body,
        )

    def as_row(self) -> tuple[object, ...]:
        """The values in `STORED_COLUMNS` order."""
        return (
            self.chain,
            self.seq,
            self.hash,
            self.prev,
            self.time,
            self.query_id,
            self.principal,
            self.approval,
            self.decision,
            self.jurisdictions,
            self.body,
        )

    def record(self) -> AuditRecord:
        """The record in the body (raises `ValueError` when the body is not one)."""
        data = orjson.loads(self.body)
        return AuditRecord.model_validate(data["record"])


def jurisdictions_column(jurisdictions: list[Jurisdiction]) -> str:
    """`,FR,DE,`: a search for one jurisdiction is `LIKE '%,FR,%'`."""
    return "," + ",".join(j.value for j in jurisdictions) + "," if jurisdictions else ","
