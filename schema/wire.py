"""The gateway ⇄ connector wire protocol, named in one place.

A gateway sends `POST {node}/v1/query` with a JSON `NodeRequest` body, a gateway-signed
EdDSA JWT in `Authorization: Bearer ...` whose claims bind it to this node (`aud`), to a
short lifetime (`exp`), to one use (`jti`) and to the exact body bytes (`bsh`, SHA-256 hex),
the researcher's permit from this node's own HDAB in `X-Tessera-Approval` (byte for byte as
the HDAB signed it, so that the node verifies it end to end), and W3C `traceparent`. A
question's fan-out may sign one token for all its nodes instead (`QUESTION_TOKEN_TYP`, below;
docs/request-tokens.md).

A researcher sends the gateway one permit per jurisdiction, each in its own
`X-Tessera-Permit` header (`PERMIT_HEADER`, at most `MAX_PERMITS`); the gateway forwards to
each node only the permit of that node's HDAB.

The connector answers 200 with a `NodeResponse` (status OK, DENIED or UNKNOWN_CODE), or
4xx/5xx with a `NodeError`. Each cell of a table holds the value of every measure the
question asked, keyed by measure (`NodeCell.values`, `schema.measures`). Numbers on the wire
are already protected by the node's own disclosure control: a node never sends a value its
own rules suppress. A request may make the node a participant of a pooled round
(`NodeRequest.pooling`, `schema.pooling`): it then sends the tables to pool only as masked
shares (`NodeResponse.pooled`), which reveal nothing until every participant's are added up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Annotated, Final, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from schema.approval import Approval, RequestId
from schema.codes import (
    Dimension,
    Jurisdiction,
    MeasureKind,
    NodeStatus,
    NoiseLevel,
    Vocabulary,
)
from schema.dimensions import DIMENSIONS
from schema.errors import ErrorCode
from schema.measures import MEASURES
from schema.model import Contract
from schema.pooling import PooledAnswer, PoolingRequest
from schema.query import MAX_QUESTION_CODES, Breakdown, Code, CohortQuery
from schema.result import Reason, Value

PROTOCOL: Final = "tessera/1"

QUERY_PATH: Final = "/v1/query"
# What a node's vocabulary holds (`ConceptsRequest` → `ConceptsResponse`): public facts about
# the vocabulary, read from its concept tables only, never from a person's record.
CONCEPTS_PATH: Final = "/v1/concepts"
HEALTH_PATH: Final = "/healthz"
READY_PATH: Final = "/readyz"

CONTENT_TYPE: Final = "application/json"
APPROVAL_HEADER: Final = "X-Tessera-Approval"
# Researcher → gateway: one compact JWT (a permit of one HDAB) per header line; repeated
# lines, or one line of comma-separated permits, as HTTP allows for list-valued fields.
PERMIT_HEADER: Final = "X-Tessera-Permit"
MAX_PERMITS: Final = 32
TRACEPARENT_HEADER: Final = "traceparent"

# Claims of the gateway's request token besides the registered ones (iss, aud, iat, exp, jti).
BODY_HASH_CLAIM: Final = "bsh"
REQUEST_TOKEN_TYP: Final = "tessera-node-request+jwt"  # noqa: S105 - a JWT type, not a secret
REQUEST_TOKEN_MAX_LIFETIME_S: Final = 60
# One token for all the nodes of a question (`trust.request_token`): `aud` lists them and
# `bsm` maps each node id to the salted hash of that node's own body; the salt travels to its
# node only, in `X-Tessera-Body-Salt`, so no node can test a guess at another's body.
QUESTION_TOKEN_TYP: Final = "tessera-node-question+jwt"  # noqa: S105 - a JWT type, not a secret
BODY_HASHES_CLAIM: Final = "bsm"
BODY_SALT_HEADER: Final = "X-Tessera-Body-Salt"
BODY_SALT_BYTES: Final = 16
# Keeps a question token well inside a node's 8190-byte header line; a larger question is
# signed in groups of this many nodes.
QUESTION_TOKEN_MAX_NODES: Final = 32

MAX_REQUEST_BYTES: Final = 64 * 1024
MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024

QueryId = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{8,64}$")]


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def salted_body_hash(salt: bytes, body: bytes) -> str:
    """HMAC-SHA256 of `body` keyed by its node's salt, base64url without padding."""
    digest = hmac.new(salt, body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class NodeRequest(Contract):
    """One question for one node. `request_id` is the data request of this node's permit,
    `approval` and `subject` what the gateway verified in that permit; the node verifies the
    permit itself (the gateway routes, it does not vouch) and has the final veto."""

    protocol: Literal["tessera/1"] = PROTOCOL
    query_id: QueryId
    request_id: RequestId
    jurisdiction: Jurisdiction
    query: CohortQuery
    approval: Approval
    subject: Annotated[str, Field(min_length=1, max_length=256)]
    noise: NoiseLevel = NoiseLevel.STANDARD
    # A pooled round this node takes part in (`schema.pooling`); None: every table national.
    pooling: PoolingRequest | None = None

    @model_validator(mode="after")
    def _pooling_covers_the_tables(self) -> Self:
        if self.pooling is not None:
            asked = set(self.query.tables)
            # The total is always in `query.tables`, so it is pooled, national, or both.
            if set(self.pooling.tables) | set(self.pooling.national) != asked:
                raise ValueError("pooling: tables and national must make up query.tables")
        return self

    @property
    def national_tables(self) -> list[Breakdown]:
        """The tables the node releases on its own, in the query's order."""
        if self.pooling is None:
            return list(self.query.tables)
        national = set(self.pooling.national)
        return [t for t in self.query.tables if t in national]


class NodeCell(Contract):
    """One cell of a node table; `key` holds the dimension values in the table's order,
    `values` the value of each measure the question asked (`schema.measures`)."""

    key: Annotated[list[str], Field(max_length=4)]
    values: Annotated[dict[MeasureKind, Value], Field(min_length=1, max_length=len(MeasureKind))]

    @model_validator(mode="after")
    def _values_within_bounds(self) -> Self:
        for kind, value in self.values.items():
            spec = MEASURES.get(kind)
            if spec is None:
                raise ValueError("a value of a measure that has no entry in schema.measures")
            if value.value is not None and value.value < spec.minimum:
                raise ValueError(f"a {kind.value} value below its minimum of {spec.minimum}")
        return self


class NodeTable(Contract):
    by: Breakdown
    cells: list[NodeCell]

    def values(self) -> list[Value]:
        """Every value of the table: each measure's, cell by cell."""
        return [value for cell in self.cells for value in cell.values.values()]


Rho = Annotated[float, Field(ge=0, le=1e6)]


class PrivacySpend(Contract):
    """What an answer cost the applicant at this node, in zero-concentrated differential
    privacy (zCDP) ρ per person, worst case: figures that depend only on the questions asked,
    never on the data. A person counted in more than `cap_rho` worth of answers drops out of
    the applicant's counts (see the README, "How your numbers are protected")."""

    sigma: Annotated[float, Field(gt=0, le=1e6)]  # sd of the noise on every count of the answer
    question_rho: Rho  # what this answer charged each person counted (0: all repeats)
    spent_rho: Rho  # the applicant's worst-case spend at this node, this answer included
    cap_rho: Rho
    organisation_spent_rho: Rho | None = None  # the applicant organisation's, when it has one
    organisation_cap_rho: Rho | None = None
    data_release: Annotated[str, Field(min_length=1, max_length=64)]


VocabularyId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,31}$")]


class UnknownCode(Contract):
    """A code (or a range of codes: `to` its end) of the question that no concept of the
    node's vocabulary matches."""

    vocabulary: Vocabulary
    code: Annotated[str, Field(min_length=1, max_length=32)]
    to: Annotated[str, Field(min_length=1, max_length=32)] | None = None


class NodeResponse(Contract):
    """OK (with tables), DENIED (with reasons), or UNKNOWN_CODE (with `unknown_codes`: the
    codes the node's vocabulary does not hold; nothing was computed nor charged)."""

    protocol: Literal["tessera/1"] = PROTOCOL
    query_id: QueryId
    jurisdiction: Jurisdiction
    status: Literal[NodeStatus.OK, NodeStatus.DENIED, NodeStatus.UNKNOWN_CODE]
    tables: list[NodeTable] = []
    reasons: list[Reason] = []
    unknown_codes: Annotated[list[UnknownCode], Field(max_length=MAX_QUESTION_CODES)] = []
    # The OMOP vocabularies the question's codes were found in at this node (for ICD-10, the
    # national modifications it holds: CIM10, ICD10GM, ICD10CM).
    vocabularies: Annotated[list[VocabularyId], Field(max_length=32)] = []
    optout_register_version: str | None = None
    privacy: PrivacySpend | None = None
    elapsed_ms: Annotated[float, Field(ge=0)] = 0.0
    # The masked shares of a pooled round (OK answers to a request with `pooling` only).
    pooled: PooledAnswer | None = None


class NodeError(Contract):
    code: ErrorCode
    message: Annotated[str, Field(max_length=512)]


def node_dimensions(table: Breakdown) -> Breakdown:
    """The part of a breakdown a node computes: jurisdiction is added by the gateway."""
    return tuple(d for d in table if DIMENSIONS[d].node_computed)


# What a node may put in a cell key, per dimension (`schema.dimensions`): a connector produces
# nothing else, and a gateway rejects an answer with anything else. Every domain is small (at most
# 1,201 keys), so a set lookup checks a key: the gateway checks every key of every answer.
KEY_DOMAINS: Final = {d: spec.keys for d, spec in DIMENSIONS.items()}


def valid_key_value(dimension: Dimension, value: str) -> bool:
    """Whether `value` is a cell key a node may send for `dimension`."""
    return value in KEY_DOMAINS[dimension]


class GatewayKeyId(Contract):
    """A gateway public key a node trusts: its `kid` and its RFC 7638 JWK thumbprint
    (SHA-256, base64url), so a check can tell a key of the same name but other material."""

    kid: Annotated[str, Field(min_length=1, max_length=128)]
    thumbprint: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$")]


class NodeIdentity(Contract):
    """Who a node is and whom it trusts, as its `GET /readyz` says it (`identity`): what
    the federation file of a gateway must agree with (`gateway.federation_check`). Public
    facts only: ids, names, key ids and thumbprints of public keys."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_max_length=256)

    node_id: Annotated[str, Field(min_length=1, max_length=128)]
    jurisdiction: Jurisdiction
    # The `iss` the node expects on the gateway's request tokens: the gateway's id.
    gateway_issuer: Annotated[str, Field(min_length=1, max_length=256)]
    # The `aud` the node expects on its HDAB's permits: the gateway's id too.
    approval_audience: Annotated[str, Field(min_length=1, max_length=256)]
    gateway_keys: Annotated[list[GatewayKeyId], Field(max_length=64)] = []
    # The node's own HDAB (its permits' `iss`); empty when none is configured.
    hdab_issuer: Annotated[str, Field(max_length=256)] = ""
    datasets: Annotated[list[Annotated[str, Field(max_length=128)]], Field(max_length=64)] = []


# -- vocabulary look-ups ---------------------------------------------------------------------

MAX_LOOKUP_CODES: Final = 32
MAX_LISTED_DESCENDANTS: Final = 100


class ConceptsRequest(Contract):
    """Which of `codes` the node's vocabulary holds, and what they reach. Signed by the gateway
    as a query is (aud, exp, jti, bsh), without a permit: nothing about a person is read."""

    protocol: Literal["tessera/1"] = PROTOCOL
    jurisdiction: Jurisdiction
    codes: Annotated[list[Code], Field(min_length=1, max_length=MAX_LOOKUP_CODES)]


ConceptText = Annotated[str, Field(max_length=256)]


class ConceptRef(Contract):
    """One OMOP concept, as its vocabulary names it."""

    vocabulary: VocabularyId
    code: Annotated[str, Field(min_length=1, max_length=64)]
    name: ConceptText
    standard: bool


class NodeConcept(Contract):
    """One code at one node: the concepts it names (`matches`, in every vocabulary it is
    looked up in), and how many more concepts it reaches (`descendants`: by code prefix for
    ICD-10 and ATC, through concept_ancestor otherwise; the first `MAX_LISTED_DESCENDANTS`
    listed)."""

    code: Code
    known: bool
    matches: Annotated[list[ConceptRef], Field(max_length=16)] = []
    descendant_count: Annotated[int, Field(ge=0)] = 0
    descendants: Annotated[list[ConceptRef], Field(max_length=MAX_LISTED_DESCENDANTS)] = []


class ConceptsResponse(Contract):
    protocol: Literal["tessera/1"] = PROTOCOL
    jurisdiction: Jurisdiction
    concepts: Annotated[list[NodeConcept], Field(max_length=MAX_LOOKUP_CODES)]
