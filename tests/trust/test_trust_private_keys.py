"""The one private-key loader: the kind asked for, or one line naming the setting, the file
and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from schema.errors import ConfigError
from tessera.cli import main
from trust.private_keys import load_pooling_key, load_signing_key


class SomeError(ConfigError):
    pass


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    assert main(["keys", "generate", "audit", "--dir", str(tmp_path)]) == 0
    assert main(["keys", "generate", "pool", "--kind", "x25519", "--dir", str(tmp_path)]) == 0
    return tmp_path


def test_each_kind_loads(keys: Path) -> None:
    signing = load_signing_key(keys / "audit.key.pem", setting="S")
    assert isinstance(signing, Ed25519PrivateKey)
    pooling = load_pooling_key(keys / "pool.key.pem", setting="S")
    assert isinstance(pooling, X25519PrivateKey)


def test_a_key_of_the_other_kind_is_refused(keys: Path) -> None:
    with pytest.raises(SomeError, match=r"^POOL_KEY: .*audit.key.pem is not an X25519 private key"):
        load_pooling_key(keys / "audit.key.pem", setting="POOL_KEY", error=SomeError)
    with pytest.raises(ConfigError, match=r"is not an Ed25519 private key .*tessera keys generate"):
        load_signing_key(keys / "pool.key.pem", setting="AUDIT_KEY")


def test_a_public_key_or_a_missing_file_is_refused(keys: Path) -> None:
    public = keys / "audit.pub.pem"
    with pytest.raises(ConfigError, match="is not an unencrypted PKCS8 PEM private key"):
        load_signing_key(public, setting="AUDIT_KEY")
    missing = keys / "missing.key.pem"
    with pytest.raises(ConfigError) as raised:
        load_signing_key(missing, setting="key", where="the federation file")
    assert str(raised.value) == (
        f"key: cannot read {missing}: No such file or directory (correct the path, relative "
        "to the federation file)"
    )
