"""A node's pooling key and registry: `tessera keys generate --kind x25519` and `tessera keys
registry` make them; the node loads them strictly at start-up, re-reads the registry when it
changes, keeps the last good one when a new one is broken, and refuses a registry that does
not name its own key."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from connectors.masking import pair_secret
from connectors.pool_peers import (
    PoolKeyError,
    PoolKeys,
    UnknownPeer,
    encode_public,
    parse_registry,
)
from tessera.cli import main
from trust.private_keys import load_pooling_key

FR, DE, FI = "tessera-node-fr", "tessera-node-de", "tessera-node-fi"


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    for name in ("pool-fr", "pool-de", "pool-fi"):
        assert main(["keys", "generate", name, "--kind", "x25519", "--dir", str(tmp_path)]) == 0
    return tmp_path


def pool_key(path: Path) -> X25519PrivateKey:
    return load_pooling_key(path, setting="TESSERA_CONNECTOR_POOL_KEY")


def registry(keys_dir: Path, *entries: str, out: str = "pool-peers.json") -> Path:
    path = keys_dir / out
    assert main(["keys", "registry", *entries, "--dir", str(keys_dir), "--out", str(path)]) == 0
    return path


def test_x25519_keys_and_the_registry_they_publish(keys_dir: Path) -> None:
    private = keys_dir / "pool-fr.key.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    path = registry(keys_dir, f"{FR}=pool-fr", f"{DE}=pool-de")
    document = json.loads(path.read_text())
    assert sorted(document) == [DE, FR]
    assert document[FR] == encode_public(pool_key(private).public_key())
    assert "PRIVATE" not in path.read_text()


def test_both_ends_of_a_pair_agree_on_their_secret(keys_dir: Path) -> None:
    path = registry(keys_dir, f"{FR}=pool-fr", f"{DE}=pool-de", f"{FI}=pool-fi")
    fr = PoolKeys.load(FR, pool_key(keys_dir / "pool-fr.key.pem"), path)
    de = PoolKeys.load(DE, pool_key(keys_dir / "pool-de.key.pem"), path)
    assert fr.secrets([DE, FI, FR])[DE] == de.secrets([DE, FR])[FR]
    assert fr.secrets([DE, FI, FR])[DE] != fr.secrets([DE, FI, FR])[FI]
    with pytest.raises(UnknownPeer):
        fr.secrets([FR, "tessera-node-xx"])


def test_the_registry_must_name_this_node_with_its_own_key(keys_dir: Path) -> None:
    without = registry(keys_dir, f"{DE}=pool-de", f"{FI}=pool-fi")
    with pytest.raises(PoolKeyError, match="does not list this node"):
        PoolKeys.load(FR, pool_key(keys_dir / "pool-fr.key.pem"), without)
    other = registry(keys_dir, f"{FR}=pool-de", f"{DE}=pool-fi", out="other.json")
    with pytest.raises(PoolKeyError, match="another key for this node"):
        PoolKeys.load(FR, pool_key(keys_dir / "pool-fr.key.pem"), other)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[]", "non-empty object"),
        (b"{}", "non-empty object"),
        (b'{"bad id!": "AAAA"}', "malformed node id"),
        (b'{"n": 5}', "not a string"),
        (b'{"n": "***"}', "not base64url"),
        (b'{"n": "AAAA"}', "not 32 bytes"),
    ],
)
def test_a_malformed_registry_is_refused(document: bytes, problem: str) -> None:
    with pytest.raises(PoolKeyError, match=problem):
        parse_registry(document)


def test_two_nodes_with_one_key_are_refused() -> None:
    key = encode_public(X25519PrivateKey.generate().public_key())
    with pytest.raises(PoolKeyError, match="another node's key"):
        parse_registry(json.dumps({FR: key, DE: key}).encode())


def test_a_changed_registry_is_read_again_and_a_broken_one_ignored(
    keys_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = registry(keys_dir, f"{FR}=pool-fr", f"{DE}=pool-de")
    fr = PoolKeys.load(FR, pool_key(keys_dir / "pool-fr.key.pem"), path)
    with pytest.raises(UnknownPeer):
        fr.secrets([FI, FR])
    registry(keys_dir, f"{FR}=pool-fr", f"{DE}=pool-de", f"{FI}=pool-fi")
    fi = PoolKeys.load(FI, pool_key(keys_dir / "pool-fi.key.pem"), path)
    assert fr.secrets([FI, FR])[FI] == fi.secrets([FI, FR])[FR]
    good = path.read_bytes()
    path.write_text("{ broken")
    os.utime(path, ns=(1, 1))  # a new modification time, whatever the clock's resolution
    with caplog.at_level(logging.ERROR, logger="connectors.pool_peers"):
        assert set(fr.peers()) == {FR, DE, FI}  # the last good registry stays in force
    assert "not reloaded" in caplog.text
    path.write_bytes(good)
    assert set(fr.peers()) == {FR, DE, FI}


def test_the_secret_is_the_x25519_agreement() -> None:
    a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    assert pair_secret(a, b.public_key()) == pair_secret(b, a.public_key())
