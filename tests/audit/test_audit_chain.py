"""The hash chain and its signed heads, on entries in memory (no store)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from schema.audit.chain import key_id, sign_head, verify_chain
from schema.audit.entry import GENESIS, AuditRecord, StoredEntry, canonical_json, digest, seal
from tests.audit.audit_kit import record

CHAIN = "gateway:tessera-gateway"


def chain_of(n: int) -> list[StoredEntry]:
    rows, prev = [], GENESIS
    for i in range(1, n + 1):
        entry = seal(CHAIN, i, prev, record(i))
        rows.append(StoredEntry.of(entry))
        prev = entry.hash
    return rows


def test_an_intact_chain_verifies() -> None:
    rows = chain_of(5)
    result = verify_chain(CHAIN, rows)
    assert result.ok
    assert (result.entries, result.last_hash) == (5, rows[-1].hash)
    assert result.summary() == "OK: 5 entries, no signed head yet"


def test_each_entry_commits_to_the_previous_one() -> None:
    first, second = chain_of(2)
    assert json.loads(first.body)["prev"] == GENESIS
    assert json.loads(second.body)["prev"] == first.hash
    assert second.hash == digest(second.body)


def test_the_body_is_canonical() -> None:
    entry = seal(CHAIN, 1, GENESIS, record(1))
    assert entry.body == canonical_json(json.loads(entry.body))
    assert " " not in entry.body.replace("scientific_research", "")
    again = seal(CHAIN, 1, GENESIS, AuditRecord.model_validate_json(entry.record.model_dump_json()))
    assert again.hash == entry.hash


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_JSON)
def test_the_canonical_text_is_what_the_standard_library_writes(data: object) -> None:
    # Hashes made before the faster encoder (and by any other implementation of the same
    # rule) stay comparable: the text is byte for byte the same.
    expected = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(data) == expected


def _tampered_body(row: StoredEntry, **changes: object) -> StoredEntry:
    data = json.loads(row.body)
    data["record"].update(changes)
    return dataclasses.replace(row, body=canonical_json(data))


@pytest.mark.parametrize(
    ("tamper", "broken_at", "reason"),
    [
        (lambda r: r.__setitem__(2, _tampered_body(r[2], purpose="marketing")), 3, "altered"),
        (
            # Altered and re-hashed: the next entry no longer follows it.
            lambda r: r.__setitem__(
                2,
                dataclasses.replace(
                    t := _tampered_body(r[2], purpose="marketing"), hash=digest(t.body)
                ),
            ),
            4,
            "does not follow",
        ),
        (lambda r: r.pop(1), 2, "deleted or moved"),
        (lambda r: r.insert(1, r.pop(3)), 2, "deleted or moved"),
        (lambda r: r.__setitem__(0, dataclasses.replace(r[0], principal="someone")), 1, "column"),
        (lambda r: r.__setitem__(4, dataclasses.replace(r[4], body="{}")), 5, "altered"),
    ],
    ids=["altered", "altered-and-rehashed", "deleted", "reordered", "column", "garbage"],
)
def test_tampering_names_the_first_broken_entry(tamper, broken_at, reason) -> None:  # type: ignore[no-untyped-def]
    rows = chain_of(6)
    tamper(rows)
    result = verify_chain(CHAIN, rows)
    assert not result.ok
    assert result.broken is not None
    assert result.broken.seq == broken_at
    assert reason in result.broken.reason
    assert result.summary().startswith(f"BROKEN at entry {broken_at}")


def test_swapping_whole_entries_with_their_seq_is_detected() -> None:
    rows = chain_of(4)
    a, b = rows[1], rows[2]
    rows[1] = dataclasses.replace(b, seq=2)
    rows[2] = dataclasses.replace(a, seq=3)
    result = verify_chain(CHAIN, rows)
    assert result.broken is not None
    assert result.broken.seq == 2


def test_signed_heads_detect_truncation() -> None:
    key = Ed25519PrivateKey.generate()
    rows = chain_of(10)
    heads = [
        sign_head(key, CHAIN, 5, rows[4].hash, "t"),
        sign_head(key, CHAIN, 10, rows[9].hash, "t"),
    ]
    keys = {key_id(key.public_key()): key.public_key()}
    assert verify_chain(CHAIN, rows, heads, keys).summary() == (
        "OK: 10 entries, 2 signed heads, 2 signatures verified"
    )
    truncated = verify_chain(CHAIN, rows[:8], heads, keys)
    assert not truncated.ok
    assert truncated.broken is None  # consistent in itself ...
    assert "signed at entry 10 but the chain ends at entry 8" in truncated.head_problems[0]


def test_a_rewritten_chain_does_not_match_its_signed_head() -> None:
    key = Ed25519PrivateKey.generate()
    rows = chain_of(3)
    head = sign_head(key, CHAIN, 3, rows[2].hash, "t")
    # Someone rebuilds a consistent chain with other contents.
    forged, prev = [], GENESIS
    for i in range(1, 4):
        entry = seal(CHAIN, i, prev, record(i, purpose="other"))
        forged.append(StoredEntry.of(entry))
        prev = entry.hash
    result = verify_chain(CHAIN, forged, [head], {key_id(key.public_key()): key.public_key()})
    assert result.head_problems == ["entry 3 differs from the one whose hash was signed"]


def test_forged_or_foreign_signatures_are_problems() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    rows = chain_of(2)
    good = sign_head(key, CHAIN, 2, rows[1].hash, "t")
    forged = dataclasses.replace(good, seq=1, hash=rows[0].hash)
    foreign = sign_head(other, CHAIN, 2, rows[1].hash, "t")
    keys = {key_id(key.public_key()): key.public_key()}
    result = verify_chain(CHAIN, rows, [forged, foreign], keys)
    assert len(result.head_problems) == 2
    assert all("does not verify" in p for p in result.head_problems)
    # Without keys the heads still bound the chain's length, unauthenticated.
    assert verify_chain(CHAIN, rows, [forged, foreign]).ok


def test_entries_of_another_chain_do_not_verify() -> None:
    result = verify_chain("node:tessera-node-fr", chain_of(2))
    assert result.broken is not None
    assert result.broken.seq == 1
