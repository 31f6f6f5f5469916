"""The one loader of a service's private keys: the gateway's signing key and audit key, a
node's audit key and its pooling key. Each is an unencrypted PKCS8 PEM file as `tessera keys
generate` writes it; what cannot be read, is no private key, or is of the wrong kind fails
the start with one line naming the setting, the file and what to do (never the key)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from schema.errors import ConfigError


def load_signing_key(
    path: Path, *, setting: str, error: type[ConfigError] = ConfigError, where: str = ""
) -> Ed25519PrivateKey:
    """The Ed25519 private key in `path` (signing node requests, audit chain heads); else
    `error` naming `setting` (a variable, or a field of a file) and `path`. `where` says what
    a relative path is relative to."""
    key = _private_key(path, setting, error, where)
    if not isinstance(key, Ed25519PrivateKey):
        raise error(_wrong_kind(path, setting, "Ed25519", "`tessera keys generate NAME`"))
    return key


def load_pooling_key(
    path: Path, *, setting: str, error: type[ConfigError] = ConfigError, where: str = ""
) -> X25519PrivateKey:
    """The X25519 private key in `path` (secure pooling); errors as `load_signing_key`."""
    key = _private_key(path, setting, error, where)
    if not isinstance(key, X25519PrivateKey):
        make = "`tessera keys generate NAME --kind x25519`"
        raise error(_wrong_kind(path, setting, "X25519", make))
    return key


def _private_key(path: Path, setting: str, error: type[ConfigError], where: str) -> PrivateKeyTypes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        fix = f"correct the path, relative to {where}" if where else "correct the path"
        raise error(f"{setting}: cannot read {path}: {exc.strerror} ({fix})") from None
    try:
        return load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise error(
            f"{setting}: {path} is not an unencrypted PKCS8 PEM private key (name the private "
            "half, NAME.key.pem, as `tessera keys generate` writes it)"
        ) from None


def _wrong_kind(path: Path, setting: str, kind: str, make: str) -> str:
    return f"{setting}: {path} is not an {kind} private key (make one with {make})"
