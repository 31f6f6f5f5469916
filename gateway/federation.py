"""The federation file: who the gateway is, whose researcher tokens it trusts, which nodes it
asks. Read once at start-up; every key it names is loaded and checked then, so a broken file
fails the start rather than the first query."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schema.codes import Jurisdiction

# Asymmetric only: a shared-secret algorithm (HS*) would let anyone holding the verification
# key mint tokens, and "none" verifies nothing.
Algorithm = Literal["EdDSA", "ES256", "RS256", "PS256"]
PublicKey = Ed25519PublicKey | Ed448PublicKey | EllipticCurvePublicKey | RSAPublicKey

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]
MIN_RSA_BITS = 2048


class FederationError(ValueError):
    """The federation file is unreadable or invalid; the message says where."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GatewaySection(_Section):
    id: Identifier
    signing_key: Path
    signing_kid: Identifier


class IssuerSection(_Section):
    iss: Annotated[str, Field(min_length=1, max_length=256)]
    public_key: Path
    algorithms: Annotated[list[Algorithm], Field(min_length=1)]


class NodeSection(_Section):
    jurisdiction: Jurisdiction
    node_id: Identifier
    url: Annotated[str, Field(max_length=512)]

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or a fragment")
        return url.rstrip("/")


class FederationFile(_Section):
    gateway: GatewaySection
    issuers: Annotated[list[IssuerSection], Field(min_length=1)]
    nodes: Annotated[list[NodeSection], Field(min_length=1, max_length=32)]

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        for what, values in (
            ("issuers[].iss", [i.iss for i in self.issuers]),
            ("nodes[].jurisdiction", [n.jurisdiction.value for n in self.nodes]),
            ("nodes[].node_id", [n.node_id for n in self.nodes]),
        ):
            if len(set(values)) != len(values):
                raise ValueError(f"{what} must be distinct")
        return self


@dataclass(frozen=True, slots=True)
class NodeInfo:
    jurisdiction: Jurisdiction
    node_id: str
    url: str


@dataclass(frozen=True, slots=True)
class Issuer:
    iss: str
    key: PublicKey
    algorithms: tuple[Algorithm, ...]


@dataclass(frozen=True, slots=True)
class Federation:
    gateway_id: str
    signing_key: Ed25519PrivateKey
    signing_kid: str
    issuers: Mapping[str, Issuer]
    # In the file's order: answers list the nodes in the order the operator wrote them.
    nodes: Mapping[Jurisdiction, NodeInfo]

    @property
    def members(self) -> tuple[Jurisdiction, ...]:
        return tuple(self.nodes)


def load_federation(path: Path) -> Federation:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise FederationError(f"cannot read the federation file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise FederationError(f"{path} is not valid TOML: {e}") from None
    try:
        config = FederationFile.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise FederationError(f"{path}: {problems}") from None
    base = path.parent
    return Federation(
        gateway_id=config.gateway.id,
        signing_key=_signing_key(base / config.gateway.signing_key),
        signing_kid=config.gateway.signing_kid,
        issuers={
            i.iss: Issuer(
                iss=i.iss,
                key=_issuer_key(base / i.public_key, i.algorithms),
                algorithms=tuple(dict.fromkeys(i.algorithms)),
            )
            for i in config.issuers
        },
        nodes={
            n.jurisdiction: NodeInfo(jurisdiction=n.jurisdiction, node_id=n.node_id, url=n.url)
            for n in config.nodes
        },
    )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise FederationError(f"cannot read the {what} {path}: {e.strerror}") from None


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted Ed25519 private key (PKCS8 PEM); `FederationError` otherwise."""
    return _signing_key(path)


def _signing_key(path: Path) -> Ed25519PrivateKey:
    data = _read(path, "signing key")
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise FederationError(f"{path} is not an unencrypted PKCS8 PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise FederationError(f"{path} is not an Ed25519 key (node requests are EdDSA-signed)")
    return key


def _issuer_key(path: Path, algorithms: list[Algorithm]) -> PublicKey:
    data = _read(path, "issuer key")
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError):
        raise FederationError(f"{path} is not a PEM SubjectPublicKeyInfo public key") from None
    for algorithm in algorithms:
        if not _fits(key, algorithm):
            raise FederationError(f"{path} is not a key for {algorithm}")
    assert isinstance(key, PublicKey)  # _fits accepted it for some algorithm
    return key


def _fits(key: object, algorithm: Algorithm) -> bool:
    match algorithm:
        case "EdDSA":
            return isinstance(key, Ed25519PublicKey | Ed448PublicKey)
        case "ES256":
            return isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, SECP256R1)
        case "RS256" | "PS256":
            return isinstance(key, RSAPublicKey) and key.key_size >= MIN_RSA_BITS
