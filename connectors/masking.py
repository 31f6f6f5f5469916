"""Pairwise masks for secure pooling: what makes one node's shares unreadable alone.

Every pair of nodes i, j shares a secret s_ij, the X25519 agreement of one's private key with
the other's public key (static-static: both ends compute the same 32 bytes, nobody else
can). For each pooled table of a round, the pair derives a 256-bit key with HKDF-SHA256
(RFC 5869; input s_ij, salt the round's nonce, info the protocol version, the participants,
the pair, the table's question digest, the round and the pooled sd), and expands it into one
64-bit mask per cell with the ChaCha20 keystream (HKDF-Expand alone stops at 8,160 bytes,
1,020 cells; a table may have 10,000).

Node i sends, per cell, its noisy share plus Σ_{j>i} m_ij − Σ_{j<i} m_ij modulo 2**64 (nodes
ordered by id): in the sum over all participants every mask appears once with each sign and
cancels exactly. A vector missing from the sum leaves masks that do not cancel, so any sum
over fewer nodes is as uniform as the keystream. The nonce is never used twice
(`connectors.answers.AnswerStore.first_use`): the same masks on two different shares would
let their difference through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from numpy.typing import NDArray

from schema.pooling import POOL_PROTOCOL, SHARE_BYTES

KEY_BYTES: Final = 32
# The ChaCha20 counter and nonce: zero, since every key masks one table of one round only.
_STREAM_NONCE: Final = bytes(16)


def pair_secret(own: X25519PrivateKey, peer: X25519PublicKey) -> bytes:
    """s_ij. Raises ValueError for a peer key of small order (an all-zero agreement)."""
    return own.exchange(peer)


def mask_key(
    secret: bytes,
    *,
    nonce: bytes,
    participants: Sequence[str],
    pair: tuple[str, str],
    digest: str,
    round_number: int,
    sigma: float,
) -> bytes:
    """The key of one pair's masks for one table of one round."""
    info = orjson.dumps(
        [POOL_PROTOCOL, list(participants), sorted(pair), digest, round_number, sigma]
    )
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=nonce, info=info).derive(secret)


def mask(key: bytes, cells: int) -> NDArray[np.uint64]:
    """`cells` uniformly distributed 64-bit masks from `key`."""
    encryptor = Cipher(algorithms.ChaCha20(key, _STREAM_NONCE), mode=None).encryptor()
    stream = encryptor.update(bytes(cells * SHARE_BYTES))
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64)


def masked(
    values: NDArray[np.int64],
    *,
    own: str,
    secrets: Mapping[str, bytes],
    nonce: bytes,
    participants: Sequence[str],
    digest: str,
    round_number: int,
    sigma: float,
) -> NDArray[np.uint64]:
    """`values` (a node's noisy shares, one per cell) plus its masks, modulo 2**64.
    `secrets` holds s_ij for every other participant j."""
    out = values.astype(np.int64).view(np.uint64).copy()
    for peer in participants:
        if peer == own:
            continue
        key = mask_key(
            secrets[peer],
            nonce=nonce,
            participants=participants,
            pair=(own, peer),
            digest=digest,
            round_number=round_number,
            sigma=sigma,
        )
        # uint64 arithmetic wraps: additions and subtractions are modulo 2**64.
        if peer > own:
            out += mask(key, len(values))
        else:
            out -= mask(key, len(values))
    return out
