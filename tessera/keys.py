"""Key pairs as PEM files: Ed25519 (the gateway's request-signing key, demo HDAB issuer keys,
audit keys) and X25519 (a node's secure pooling key); the rotation of signing keys, the JWKS
files that publish their public halves, and the pooling registry that publishes every node's
X25519 public key.

A key pair is `KID.key.pem` (owner-only) and `KID.pub.pem`. Rotated keys are generations of a
family, `FAMILY-1`, `FAMILY-2`, ..., and `FAMILY.jwks.json` lists the newest public keys: the
signer uses the newest, verifiers trust the set.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from trust.keys import PublicKey, jwks


def private_key_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.key.pem"


def public_key_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.pub.pem"


KeyKind = Literal["ed25519", "x25519"]


def generate_keypair(
    directory: Path, name: str, *, overwrite: bool = False, kind: KeyKind = "ed25519"
) -> tuple[Path, Path]:
    """Write `NAME.key.pem` (PKCS8, readable by the owner only) and `NAME.pub.pem`: an Ed25519
    signing key, or with `kind="x25519"` a secure pooling key."""
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = private_key_path(directory, name), public_key_path(directory, name)
    if private_path.exists() and not overwrite:
        raise FileExistsError(f"{private_path} exists; pass --overwrite to replace it")
    key: Ed25519PrivateKey | X25519PrivateKey = (
        X25519PrivateKey.generate() if kind == "x25519" else Ed25519PrivateKey.generate()
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # Create the private key file with owner-only permissions from the start: never readable
    # by others even for a moment.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def ensure_keypair(directory: Path, name: str, *, kind: KeyKind = "ed25519") -> tuple[Path, Path]:
    private_path, public_path = private_key_path(directory, name), public_key_path(directory, name)
    if private_path.exists() and public_path.exists():
        return private_path, public_path
    return generate_keypair(directory, name, overwrite=True, kind=kind)


def load_pool_public_key(path: Path) -> X25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, X25519PublicKey):
        raise ValueError(f"{path} holds no X25519 public key")
    return key


def write_pool_registry(keys: Mapping[str, Path], out: Path) -> Path:
    """The pooling registry every node is given (`--pool-peers`): each node id with the
    X25519 public key in its PEM file, base64url. Written whole to a temporary file first,
    then moved into place, so a node re-reading it never sees half a file."""
    from connectors.pool_peers import encode_public

    document = {node: encode_public(load_pool_public_key(pem)) for node, pem in keys.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    partial.replace(out)
    return out


def load_public_key(path: Path) -> PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, PublicKey):
        raise ValueError(f"{path} holds no signature public key")
    return key


def write_jwks(directory: Path, kids: Sequence[str], out: Path) -> Path:
    """A JWKS file of the public keys `KID.pub.pem` in `directory`, each under its kid, in
    the given order. Written whole to a temporary file first, then moved into place, so a
    node or gateway re-reading it never sees half a file."""
    document = jwks({kid: load_public_key(public_key_path(directory, kid)) for kid in kids})
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    partial.replace(out)
    return out


def generations(directory: Path, family: str) -> list[int]:
    """The numbers N of the key pairs `FAMILY-N` in `directory`, ascending."""
    pattern = re.compile(rf"{re.escape(family)}-(\d+)\.pub\.pem")
    found = (pattern.fullmatch(p.name) for p in directory.glob(f"{family}-*.pub.pem"))
    return sorted(int(m.group(1)) for m in found if m)


def jwks_path(directory: Path, family: str) -> Path:
    return directory / f"{family}.jwks.json"


@dataclass(frozen=True, slots=True)
class Rotation:
    kid: str  # sign with this one from now on
    private_key: Path
    jwks: Path
    trusted: tuple[str, ...]  # the kids the JWKS now holds, newest first

    @property
    def public_key(self) -> Path:
        return public_key_path(self.private_key.parent, self.kid)


def rotate(directory: Path, family: str, *, keep: int = 2) -> Rotation:
    """A new key pair `FAMILY-(N+1)` and `FAMILY.jwks.json` with the `keep` newest public
    keys: verifiers that read the JWKS trust the new key at once and the previous one for as
    long as tokens it signed may still be in use; older keys drop out of the set."""
    if keep < 1:
        raise ValueError("keep at least one key")
    directory.mkdir(parents=True, exist_ok=True)
    number = max(generations(directory, family), default=0) + 1
    kid = f"{family}-{number}"
    private_path, _ = generate_keypair(directory, kid)
    trusted = tuple(f"{family}-{n}" for n in reversed(generations(directory, family)[-keep:]))
    return Rotation(
        kid=kid,
        private_key=private_path,
        jwks=write_jwks(directory, trusted, jwks_path(directory, family)),
        trusted=trusted,
    )


def ensure_rotated(directory: Path, family: str) -> Rotation:
    """The newest generation of `family` and its JWKS, rotating once if there is none."""
    numbers = generations(directory, family)
    if not numbers or not jwks_path(directory, family).exists():
        return rotate(directory, family)
    kid = f"{family}-{numbers[-1]}"
    trusted = tuple(f"{family}-{n}" for n in reversed(numbers[-2:]))
    return Rotation(kid, private_key_path(directory, kid), jwks_path(directory, family), trusted)
