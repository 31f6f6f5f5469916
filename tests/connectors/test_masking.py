"""Secure pooling's masks: they cancel exactly in the sum over every participant, and what the
gateway receives from one node (or from any set of nodes but all) is uniformly distributed,
whatever that node's counts are."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from numpy.typing import NDArray
from scipy import stats

from connectors.masking import mask, mask_key, masked, pair_secret
from schema.pooling import pooled_sum

NODES = ("tessera-node-de", "tessera-node-dk", "tessera-node-fi", "tessera-node-fr")
DIGEST = hashlib.sha256(b"a question table").hexdigest()


def keys(nodes: Sequence[str]) -> dict[str, X25519PrivateKey]:
    # Fixed keys: the statistical tests below are deterministic, so they never fail by chance.
    return {
        n: X25519PrivateKey.from_private_bytes(hashlib.sha256(n.encode()).digest()) for n in nodes
    }


def secrets_of(node: str, private: dict[str, X25519PrivateKey]) -> dict[str, bytes]:
    return {
        peer: pair_secret(private[node], key.public_key())
        for peer, key in private.items()
        if peer != node
    }


def round_vectors(
    values: dict[str, NDArray[np.int64]],
    nonce: bytes,
    *,
    round_number: int = 1,
    private: dict[str, X25519PrivateKey] | None = None,
) -> dict[str, NDArray[np.uint64]]:
    nodes = sorted(values)
    private = private or keys(nodes)
    return {
        n: masked(
            values[n],
            own=n,
            secrets=secrets_of(n, private),
            nonce=nonce,
            participants=nodes,
            digest=DIGEST,
            round_number=round_number,
            sigma=5.0,
        )
        for n in nodes
    }


@pytest.mark.parametrize("participants", [2, 3, 4])
@pytest.mark.parametrize("cells", [1, 1020, 1021, 10_000])
def test_masks_cancel_exactly_in_the_sum_over_every_participant(
    participants: int, cells: int
) -> None:
    rng = np.random.default_rng(participants * 100_003 + cells)
    nodes = NODES[:participants]
    values = {n: rng.integers(-50, 5_000_000, size=cells, dtype=np.int64) for n in nodes}
    vectors = round_vectors(values, rng.bytes(32))
    total = pooled_sum(list(vectors.values()))
    assert total.dtype == np.int64
    assert np.array_equal(total, sum(values.values()))
    # Each vector alone is nothing like its values.
    for n in nodes:
        assert not np.array_equal(vectors[n].view(np.int64), values[n])


def key(secret: bytes, pair: tuple[str, str], **changes: object) -> bytes:
    context: dict[str, object] = {
        "nonce": bytes(32),
        "participants": NODES[:3],
        "digest": DIGEST,
        "round_number": 1,
        "sigma": 5.0,
    }
    context.update(changes)
    return mask_key(secret, pair=pair, **context)  # type: ignore[arg-type]


def test_both_ends_of_a_pair_derive_the_same_key_and_nobody_else_does() -> None:
    private = keys(NODES[:3])
    a, b, c = NODES[:3]
    s_ab = pair_secret(private[a], private[b].public_key())
    s_ba = pair_secret(private[b], private[a].public_key())
    s_ac = pair_secret(private[a], private[c].public_key())
    k_ab = key(s_ab, (a, b))
    assert k_ab == key(s_ba, (b, a))
    assert k_ab != key(s_ac, (a, c))
    # Another round, nonce, participant list, table or sd: other masks.
    assert k_ab != key(s_ab, (a, b), round_number=2)
    assert k_ab != key(s_ab, (a, b), nonce=bytes([1]) + bytes(31))
    assert k_ab != key(s_ab, (a, b), participants=NODES[:4])
    assert k_ab != key(s_ab, (a, b), digest=DIGEST[::-1])
    assert k_ab != key(s_ab, (a, b), sigma=10.0)


def test_masks_with_another_participant_list_do_not_cancel() -> None:
    # A gateway that tells two nodes different participant lists gets noise, not a sum.
    values = {n: np.full(64, 7, dtype=np.int64) for n in NODES[:3]}
    nonce = bytes(range(32))
    vectors = round_vectors(values, nonce)
    private = keys(NODES[:3])
    a = NODES[0]
    other = masked(
        values[a],
        own=a,
        secrets=secrets_of(a, private),
        nonce=nonce,
        participants=NODES[:3],
        digest=DIGEST,
        round_number=1,
        sigma=10.0,  # told another sd than the others
    )
    total = pooled_sum([other, *(vectors[n] for n in NODES[1:3])])
    assert not np.array_equal(total, np.full(64, 21))


# -- uniformity -----------------------------------------------------------------------------
ROUNDS = 600
CELLS = 64  # per round: 38,400 words per input


def received(node_values: int, *, rounds: int = ROUNDS, from_nodes: int = 1) -> NDArray[np.uint64]:
    """What the gateway receives over many rounds (a fresh nonce each) from the first
    `from_nodes` nodes added up, when the first node's every cell holds `node_values` and the
    others' hold 3."""
    rng = np.random.default_rng(2024)
    private = keys(NODES)
    words = []
    for _ in range(rounds):
        values = {n: np.full(CELLS, 3, dtype=np.int64) for n in NODES}
        values[NODES[0]] = np.full(CELLS, node_values, dtype=np.int64)
        vectors = round_vectors(values, rng.bytes(32), private=private)
        partial = np.zeros(CELLS, dtype=np.uint64)
        for n in NODES[:from_nodes]:
            partial += vectors[n]
        words.append(partial)
    return np.concatenate(words)


def uniform_p_values(words: NDArray[np.uint64]) -> list[float]:
    """p-values of three tests of uniformity over [0, 2**64): chi-square of the low byte
    (where a small count would show), chi-square of the high byte, and Kolmogorov–Smirnov of
    the whole word."""
    low = np.bincount((words & np.uint64(0xFF)).astype(np.int64), minlength=256)
    high = np.bincount((words >> np.uint64(56)).astype(np.int64), minlength=256)
    unit = words.astype(np.float64) / 2.0**64
    return [
        float(stats.chisquare(low).pvalue),
        float(stats.chisquare(high).pvalue),
        float(stats.kstest(unit, "uniform").pvalue),
    ]


# Fixed keys and nonces make every p-value below a fixed number: a threshold this low fails
# only for masks that are not uniform.
ALPHA = 1e-4


@pytest.mark.parametrize("value", [0, 1, 10, 1_000_000])
def test_one_node_vector_is_uniform_whatever_its_counts(value: int) -> None:
    assert min(uniform_p_values(received(value))) > ALPHA


def test_two_very_different_inputs_give_the_same_distribution() -> None:
    small, large = received(0), received(987_654_321)
    unit = 2.0**64
    result = stats.ks_2samp(small.astype(np.float64) / unit, large.astype(np.float64) / unit)
    assert result.pvalue > ALPHA
    low_small = np.bincount((small & np.uint64(0xFF)).astype(np.int64), minlength=256)
    low_large = np.bincount((large & np.uint64(0xFF)).astype(np.int64), minlength=256)
    assert stats.chi2_contingency(np.vstack([low_small, low_large])).pvalue > ALPHA


def test_the_sum_over_all_but_one_node_is_uniform_too() -> None:
    # A round a node dropped out of: the others' masks with it do not cancel.
    assert min(uniform_p_values(received(5, from_nodes=3))) > ALPHA


def test_the_tests_see_a_mask_that_hides_only_part_of_the_word() -> None:
    # The same statistics reject masks that leave the low bits alone (their power).
    rng = np.random.default_rng(7)
    keystream = mask(rng.bytes(32), ROUNDS * CELLS)
    weak = (np.uint64(5) + (keystream & np.uint64(0xFFFFFFFFFFFFFF00))).astype(np.uint64)
    assert min(uniform_p_values(weak)) < ALPHA
    # ... and the sum over every node, which is the value itself.
    assert min(uniform_p_values(received(5, rounds=20, from_nodes=4))) < ALPHA
