"""Secure pooling on the wire: what the gateway asks of the nodes of one pooled round, and
what each of them answers.

A table asked without JURISDICTION is pooled securely: each participating node sends, for
every cell of the table's public domain (`policies.domain.table_domain`, in the order of the
table's dimensions as asked), its noisy share of the cell plus pairwise masks that cancel in
the sum over the participants, modulo 2**64 (`connectors.masking`). The gateway adds the
participants' vectors and reads each cell as a signed 64-bit integer: the noisy pooled count.
One vector alone, or the sum over any set of nodes other than all participants, is uniformly
distributed whatever the counts.

Everything that makes the masks of two nodes agree travels in `PoolingRequest`: the round's
`nonce` (32 random bytes, base64url, never used twice), the `participants` (node ids, sorted,
distinct), the `round` and the pooled noise's standard deviation `sigma`. A node echoes them
in its `PooledAnswer`, and the gateway checks that each did.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Final, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import ConfigDict, Field, field_validator

from schema.codes import Dimension
from schema.model import Contract
from schema.query import MAX_TABLES, Breakdown

POOL_PROTOCOL: Final = "tessera/pool/1"
NONCE_BYTES: Final = 32
MIN_PARTICIPANTS: Final = 2
MAX_PARTICIPANTS: Final = 32
MAX_ROUNDS: Final = 2
# A share is a uint64 on the wire and a signed 64-bit integer once the masks cancel.
SHARE_BYTES: Final = 8
# A table has at most policies' `max_cells` cells (at most 1,000,000): its shares, base64url.
MAX_SHARES_CHARS: Final = -(-1_000_000 * SHARE_BYTES // 3) * 4

NodeId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]
Nonce = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$")]


def _sorted_distinct(participants: list[str]) -> list[str]:
    if participants != sorted(set(participants)):
        raise ValueError("participants must be distinct node ids in ascending order")
    return participants


def _no_jurisdiction(tables: list[Breakdown]) -> list[Breakdown]:
    if any(Dimension.JURISDICTION in table for table in tables):
        raise ValueError("a node table never has JURISDICTION")
    if len(set(tables)) != len(tables):
        raise ValueError("a table is listed twice")
    return tables


class PoolingRequest(Contract):
    """One node's part of a pooled round. `tables` are the node tables it pools (none of them
    released nationally unless also in `national`), `national` those it releases on its own
    (the tables asked by JURISDICTION, and the total when the question asks each country's
    own count or does not pool it); together they are the request's `query.tables`, so the
    total is in one or the other."""

    nonce: Nonce
    round: Annotated[int, Field(ge=1, le=MAX_ROUNDS)]
    participants: Annotated[
        list[NodeId], Field(min_length=MIN_PARTICIPANTS, max_length=MAX_PARTICIPANTS)
    ]
    sigma: Annotated[float, Field(gt=0, le=1e6)]
    tables: Annotated[list[Breakdown], Field(min_length=1, max_length=MAX_TABLES)]
    national: Annotated[list[Breakdown], Field(max_length=MAX_TABLES)]

    @field_validator("participants")
    @classmethod
    def _participants(cls, participants: list[str]) -> list[str]:
        return _sorted_distinct(participants)

    @field_validator("tables", "national")
    @classmethod
    def _tables(cls, tables: list[Breakdown]) -> list[Breakdown]:
        return _no_jurisdiction(tables)

    def nonce_bytes(self) -> bytes:
        return decode_nonce(self.nonce)


class PooledTable(Contract):
    """One pooled table's masked shares: base64url (no padding) of little-endian uint64, one
    per cell of the table's public domain, in `policies.domain.table_domain(by, query)`
    order."""

    model_config = ConfigDict(str_max_length=MAX_SHARES_CHARS)

    by: Breakdown
    shares: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]*$")]

    def values(self) -> NDArray[np.uint64]:
        return decode_shares(self.shares)


class PooledAnswer(Contract):
    """What a node answers for a pooled round: the round as it understood it, and its masked
    shares per pooled table."""

    nonce: Nonce
    round: Annotated[int, Field(ge=1, le=MAX_ROUNDS)]
    participants: Annotated[
        list[NodeId], Field(min_length=MIN_PARTICIPANTS, max_length=MAX_PARTICIPANTS)
    ]
    tables: Annotated[list[PooledTable], Field(min_length=1, max_length=MAX_TABLES)]

    def echoes(self, request: PoolingRequest) -> bool:
        """Whether this answers `request`'s round: same nonce, round and participants, and
        exactly its tables."""
        return (
            self.nonce == request.nonce
            and self.round == request.round
            and self.participants == request.participants
            and sorted(t.by for t in self.tables) == sorted(request.tables)
            and len({t.by for t in self.tables}) == len(self.tables)
        )

    @classmethod
    def of(cls, request: PoolingRequest, shares: dict[Breakdown, NDArray[np.uint64]]) -> Self:
        return cls(
            nonce=request.nonce,
            round=request.round,
            participants=request.participants,
            tables=[PooledTable(by=by, shares=encode_shares(shares[by])) for by in request.tables],
        )


def encode_nonce(raw: bytes) -> str:
    if len(raw) != NONCE_BYTES:
        raise ValueError(f"a nonce is {NONCE_BYTES} bytes")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_nonce(text: str) -> bytes:
    raw = _b64decode(text)
    if len(raw) != NONCE_BYTES:
        raise ValueError(f"a nonce is {NONCE_BYTES} bytes")
    return raw


def encode_shares(values: NDArray[np.uint64]) -> str:
    return base64.urlsafe_b64encode(values.astype("<u8").tobytes()).rstrip(b"=").decode()


def decode_shares(text: str) -> NDArray[np.uint64]:
    """The uint64 values of `text`; ValueError unless it holds a whole number of them."""
    raw = _b64decode(text)
    if len(raw) % SHARE_BYTES:
        raise ValueError("shares are not a whole number of 64-bit values")
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64)


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def pooled_sum(vectors: list[NDArray[np.uint64]]) -> NDArray[np.int64]:
    """The participants' masked vectors added modulo 2**64, each cell read as a signed 64-bit
    integer: what remains once the masks cancel."""
    total = np.zeros(len(vectors[0]), dtype=np.uint64)
    for vector in vectors:
        total += vector  # uint64 arithmetic wraps: the sum is taken modulo 2**64
    return total.view(np.int64)
