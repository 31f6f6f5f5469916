"""Verifying a chain, and the signed chain heads that make truncation detectable. Pure.

A chain is broken at the first entry whose position, previous hash, body or hash disagree
with the entries before it: a changed, deleted, inserted or reordered entry breaks the chain
there. Deleting the newest entries leaves a shorter chain that is consistent in itself; a
signed head (`seq`, `hash`, signed with the service's Ed25519 key) then names an entry that
is missing or different, so truncation up to the last signed head is detected too.

What the signed heads in the store cannot show, because whoever can rewrite the entries can
delete heads too: a chain rewritten from some entry on, with the heads after it removed. The
service signs at a known cadence, so a run of entries no head covers that is longer than the
cadence allows (`max_unsigned`) is reported; and heads kept elsewhere (the service logs every
head it signs, `head_log_line`) are checked against the trail like its own, so that a head
removed from the store, or a chain removed altogether, is found.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import ValidationError

from schema.audit.entry import (
    FORMAT_VERSION,
    GENESIS,
    StoredEntry,
    canonical_json,
    digest,
    jurisdictions_column,
)

HEAD_PURPOSE: Final = "tessera-audit-head/1"
# What precedes a signed head, as JSON, in the line the service logs for it.
HEAD_LOG_MARKER: Final = "tessera-audit-head "


def key_id(key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SignedHead:
    chain: str
    seq: int
    hash: str
    signed_at: str
    key_id: str
    signature: str  # base64 Ed25519 signature over `payload()`

    def payload(self) -> bytes:
        return head_payload(self.chain, self.seq, self.hash, self.signed_at)


def head_log_line(head: SignedHead) -> str:
    """The line the service logs for a signed head: the marker, then the head as JSON (a
    copy kept outside the store, read back by `heads_from_log`)."""
    return HEAD_LOG_MARKER + canonical_json(
        {
            "chain": head.chain,
            "seq": head.seq,
            "hash": head.hash,
            "signed_at": head.signed_at,
            "key_id": head.key_id,
            "signature": head.signature,
        }
    )


def heads_from_log(lines: Iterable[str]) -> list[SignedHead]:
    """Every signed head logged in `lines` (a service log, any prefix before the marker);
    other lines are skipped. Raises ValueError naming the line of a head that cannot be
    read."""
    heads = []
    for number, line in enumerate(lines, start=1):
        at = line.find(HEAD_LOG_MARKER)
        if at < 0:
            continue
        # A logger that quotes its message (JSON logs) escapes the head's quotes.
        text = line[at + len(HEAD_LOG_MARKER) :].strip().replace('\\"', '"')
        try:
            data = json.JSONDecoder().raw_decode(text)[0]
            head = SignedHead(
                chain=str(data["chain"]),
                seq=int(data["seq"]),
                hash=str(data["hash"]),
                signed_at=str(data["signed_at"]),
                key_id=str(data["key_id"]),
                signature=str(data["signature"]),
            )
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"line {number} holds no readable signed head") from None
        heads.append(head)
    return heads


def head_payload(chain: str, seq: int, entry_hash: str, signed_at: str) -> bytes:
    return canonical_json(
        {
            "purpose": HEAD_PURPOSE,
            "chain": chain,
            "seq": seq,
            "hash": entry_hash,
            "signed_at": signed_at,
        }
    ).encode()


def sign_head(
    key: Ed25519PrivateKey, chain: str, seq: int, entry_hash: str, signed_at: str
) -> SignedHead:
    signature = key.sign(head_payload(chain, seq, entry_hash, signed_at))
    return SignedHead(
        chain=chain,
        seq=seq,
        hash=entry_hash,
        signed_at=signed_at,
        key_id=key_id(key.public_key()),
        signature=base64.b64encode(signature).decode(),
    )


def signature_valid(head: SignedHead, keys: Mapping[str, Ed25519PublicKey]) -> bool:
    key = keys.get(head.key_id)
    if key is None:
        return False
    try:
        key.verify(base64.b64decode(head.signature, validate=True), head.payload())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Break:
    """The first entry that does not fit the chain; `seq` is the position where it should be
    (the stored seq may differ)."""

    seq: int
    reason: str


@dataclass
class Verification:
    chain: str
    entries: int = 0
    last_hash: str = GENESIS
    broken: Break | None = None
    heads_checked: int = 0
    heads_signed: int = 0  # of which the signature was checked against a given key
    heads_external: int = 0  # heads kept outside the store, checked against the chain
    head_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.broken is None and not self.head_problems

    def summary(self) -> str:
        if self.broken is not None:
            return f"BROKEN at entry {self.broken.seq}: {self.broken.reason}"
        if self.head_problems:
            return f"BROKEN: {self.head_problems[0]}"
        signed = (
            f"{self.heads_checked} signed heads, {self.heads_signed} signatures verified"
            if self.heads_checked
            else "no signed head yet"
        )
        external = (
            f", {self.heads_external} heads kept elsewhere match" if self.heads_external else ""
        )
        return f"OK: {self.entries} entries, {signed}{external}"


def check_entry(row: StoredEntry, chain: str, seq: int, prev: str) -> str | None:
    """Why `row` cannot be entry `seq` after an entry hashed `prev`, or None when it can."""
    if row.seq != seq:
        return f"expected entry {seq} here, found {row.seq} (an entry was deleted or moved)"
    if digest(row.body) != row.hash:
        return "the hash does not match the entry's contents (the entry was altered)"
    try:
        data = json.loads(row.body)
        fields = (data["v"], data["chain"], data["seq"], data["prev"])
    except (ValueError, KeyError, TypeError):
        return "the entry's contents are not an audit entry"
    if fields != (FORMAT_VERSION, chain, seq, prev) or row.prev != prev:
        return "the entry does not follow the one before it (entries were removed or reordered)"
    try:
        recorded = row.record()
    except (ValueError, KeyError, TypeError, ValidationError):
        return "the entry's record is malformed"
    columns = (
        row.time,
        row.query_id,
        row.principal,
        row.approval,
        row.decision,
        row.jurisdictions,
    )
    expected = (
        recorded.time,
        recorded.query_id,
        recorded.principal,
        recorded.approval,
        recorded.decision.value,
        jurisdictions_column(recorded.jurisdictions),
    )
    if columns != expected:
        return "a searchable column differs from the entry's contents"
    return None


def _seq(head: SignedHead) -> int:
    return head.seq


class ChainVerifier:
    """Checks a chain entry by entry (`feed`, in stored order), so that a chain of any length
    is verified in constant memory; `finish` then checks the signed heads.

    `external` are heads kept outside the store (from the service log): each must match the
    chain and still be in the store. With `max_unsigned`, a run of more entries than that
    which no head covers (from the start of the chain, between two heads, or at its end) is
    a problem: the service signs more often, so heads were removed."""

    def __init__(
        self,
        chain: str,
        heads: Sequence[SignedHead] = (),
        *,
        external: Sequence[SignedHead] = (),
        max_unsigned: int | None = None,
    ) -> None:
        self.result = Verification(chain=chain)
        self._heads = sorted(heads, key=lambda h: h.seq)
        # A log read twice (or two copies of it) names each head more than once.
        self._external = sorted({h: None for h in external if h.chain == chain}, key=_seq)
        self._max_unsigned = max_unsigned
        self._wanted = {h.seq for h in self._heads} | {h.seq for h in self._external}
        self._seen: dict[int, str] = {}

    def feed(self, row: StoredEntry) -> bool:
        """Check the next entry; False once the chain is broken (further entries are not
        looked at)."""
        result = self.result
        if result.broken is not None:
            return False
        expected_seq = result.entries + 1
        reason = check_entry(row, result.chain, expected_seq, result.last_hash)
        if reason is not None:
            result.broken = Break(expected_seq, reason)
            return False
        result.last_hash = row.hash
        result.entries = expected_seq
        if expected_seq in self._wanted:
            self._seen[expected_seq] = row.hash
        return True

    def finish(self, keys: Mapping[str, Ed25519PublicKey] | None = None) -> Verification:
        """Check every signed head against the entries fed; with `keys`, each head's
        signature too (a head signed by an unknown key is a problem then)."""
        result = self.result
        heads = len(self._heads) + len(self._external)
        if result.entries == 0 and heads and result.broken is None:
            result.head_problems.append(
                f"{heads} signed heads name this chain but the store holds none of its "
                "entries (its entries were deleted)"
            )
        covering = [h.seq for h in self._heads if self._check_head(h, keys, external=False)]
        stored = {(h.seq, h.hash, h.key_id, h.signature) for h in self._heads}
        for head in self._external:
            if not self._check_head(head, keys, external=True):
                continue
            result.heads_external += 1
            covering.append(head.seq)
            if (head.seq, head.hash, head.key_id, head.signature) not in stored:
                result.head_problems.append(
                    f"the head signed at entry {head.seq} (kept elsewhere) is missing from "
                    "the store (heads were removed)"
                )
        if self._max_unsigned is not None and result.broken is None:
            self._check_cadence(sorted(set(covering)), self._max_unsigned)
        return result

    def _check_head(
        self, head: SignedHead, keys: Mapping[str, Ed25519PublicKey] | None, *, external: bool
    ) -> bool:
        """Whether `head` holds for the chain fed; a problem is recorded when it does not."""
        result = self.result
        where = "the head kept elsewhere" if external else "the head"
        if not external:
            result.heads_checked += 1
        if keys is not None:
            if not signature_valid(head, keys):
                result.head_problems.append(
                    f"the signature of {where} at entry {head.seq} does not verify"
                )
                return False
            if not external:
                result.heads_signed += 1
        if head.chain != result.chain:
            result.head_problems.append(f"{where} at entry {head.seq} is for another chain")
            return False
        if head.seq > result.entries:
            if result.broken is None:
                result.head_problems.append(
                    f"a head was signed at entry {head.seq} but the chain ends at entry "
                    f"{result.entries} (entries were removed from its end)"
                )
            return False
        if head.seq in self._seen and self._seen[head.seq] != head.hash:
            result.head_problems.append(
                f"entry {head.seq} differs from the one whose hash was signed"
            )
            return False
        return True

    def _check_cadence(self, covering: list[int], max_unsigned: int) -> None:
        """A problem for each run of more than `max_unsigned` entries no head covers."""
        result = self.result
        previous = 0
        for seq in [*covering, result.entries]:
            if seq - previous > max_unsigned:
                end = "the end of the chain" if seq == result.entries else f"entry {seq}"
                result.head_problems.append(
                    f"no signed head covers entries {previous + 1} to {seq} ({seq - previous} "
                    f"entries, but the service leaves at most {max_unsigned} unsigned): heads "
                    f"after entry {previous} were removed, and the entries up to {end} may "
                    "have been rewritten"
                )
            previous = seq


def verify_chain(
    chain: str,
    rows: Iterable[StoredEntry],
    heads: Sequence[SignedHead] = (),
    keys: Mapping[str, Ed25519PublicKey] | None = None,
    *,
    external: Sequence[SignedHead] = (),
    max_unsigned: int | None = None,
) -> Verification:
    """Check `rows` (in stored order, by seq) as the whole chain `chain`, then its heads."""
    verifier = ChainVerifier(chain, heads, external=external, max_unsigned=max_unsigned)
    for row in rows:
        if not verifier.feed(row):
            break
    return verifier.finish(keys)
