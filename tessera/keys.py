"""Ed25519 key pairs as PEM files: the gateway's request-signing key, demo HDAB issuer keys."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def private_key_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.key.pem"


def public_key_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.pub.pem"


def generate_keypair(directory: Path, name: str, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write `NAME.key.pem` (PKCS8, readable by the owner only) and `NAME.pub.pem`."""
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = private_key_path(directory, name), public_key_path(directory, name)
    if private_path.exists() and not overwrite:
        raise FileExistsError(f"{private_path} exists; pass --overwrite to replace it")
    key = Ed25519PrivateKey.generate()
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


def ensure_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    private_path, public_path = private_key_path(directory, name), public_key_path(directory, name)
    if private_path.exists() and public_path.exists():
        return private_path, public_path
    return generate_keypair(directory, name, overwrite=True)
