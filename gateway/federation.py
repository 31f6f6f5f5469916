"""The federation file: who the gateway is, whose researcher tokens it trusts, which nodes it
asks. Read once at start-up; every key file it names is loaded and checked then, so a broken
file fails the start rather than the first query. An issuer's keys are a PEM public key
(`public_key`), a JWKS file (`jwks_file`, for offline hubs) or a JWKS URL (`jwks_url`); a JWKS
is refreshed in the background once the gateway runs (see `trust.keysource`).

An issuer's `jurisdictions` say whose HDAB it is: its tokens are permits for those
jurisdictions only (`["FR"]` for France's HDAB). Omitted, it is a shared issuer whose
permits count for any jurisdiction they cover; `[]`, an identity provider whose tokens
authenticate researchers and are never permits. A node's `datasets`, when given, let the
gateway refuse a permit that names none of them before asking the node (which checks anyway).
A node with `pools = true` has a secure pooling key in the federation's pooling registry: the
gateway makes it a participant of pooled rounds when its jurisdiction's policy takes part
(`disclosure.secure_pooling`); without it, the node answers every table nationally. A node's
`latency` is its latency class (`gateway.latency`): `interactive` unless given, `batch` for a
hub on a distributed engine such as Spark, waited for up to the batch class's node timeout."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final, Self
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.latency import LatencyClass
from schema.codes import Jurisdiction
from schema.errors import ConfigError
from trust.keys import Algorithm, KeyMaterialError, KeySet, parse_jwks, pem_public_key
from trust.keysource import (
    DEFAULT_REFRESH_S,
    MIN_REFRESH_S,
    KeySource,
    RefreshingKeys,
    StaticKeys,
    check_jwks_url,
    file_fetch,
    http_fetch,
)
from trust.private_keys import load_signing_key
from trust.tokens import (
    DEFAULT_LEEWAY_S,
    DEFAULT_MAX_LIFETIME_S,
    MAX_LEEWAY_S,
    TrustedIssuer,
)

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]
TokenType = Annotated[str, Field(pattern=r"^[A-Za-z0-9.+/-]{1,64}$")]


class FederationError(ConfigError):
    """The federation file is unreadable or invalid; the message says where."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GatewaySection(_Section):
    id: Identifier
    signing_key: Path
    signing_kid: Identifier


class IssuerSection(_Section):
    iss: Annotated[str, Field(min_length=1, max_length=256)]
    public_key: Path | None = None
    jwks_file: Path | None = None
    jwks_url: Annotated[str, Field(max_length=512)] | None = None
    # Asymmetric only (see `trust.keys.Algorithm`): "none" and HS* cannot even be written.
    algorithms: Annotated[list[Algorithm], Field(min_length=1)]
    leeway_s: Annotated[int, Field(ge=0, le=MAX_LEEWAY_S)] = DEFAULT_LEEWAY_S
    max_lifetime_s: Annotated[int, Field(gt=0, le=30 * 24 * 3600)] = DEFAULT_MAX_LIFETIME_S
    types: Annotated[list[TokenType], Field(min_length=1)] = ["JWT", "at+jwt"]
    refresh_s: Annotated[float, Field(ge=MIN_REFRESH_S, le=24 * 3600)] = DEFAULT_REFRESH_S
    # Whose HDAB this issuer is; None: any jurisdiction (a shared issuer); []: none.
    jurisdictions: Annotated[list[Jurisdiction], Field(max_length=64)] | None = None

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url(cls, url: str | None) -> str | None:
        return None if url is None else check_jwks_url(url)

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        given = [self.public_key, self.jwks_file, self.jwks_url]
        if sum(g is not None for g in given) != 1:
            raise ValueError("give exactly one of public_key, jwks_file, jwks_url")
        return self


class NodeSection(_Section):
    jurisdiction: Jurisdiction
    node_id: Identifier
    url: Annotated[str, Field(max_length=512)]
    # The datasets the node serves, if the gateway is to check permits against them too.
    datasets: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=128)]], Field(min_length=1)]
        | None
    ) = None
    # Whether the node has a pooling key in the federation's registry (secure pooling).
    pools: bool = False
    # How long the gateway waits for it: its class's node timeout (`gateway.latency`).
    latency: LatencyClass = LatencyClass.INTERACTIVE

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
    datasets: frozenset[str] | None = None
    pools: bool = False
    latency: LatencyClass = LatencyClass.INTERACTIVE


@dataclass(frozen=True, slots=True)
class Federation:
    gateway_id: str
    signing_key: Ed25519PrivateKey
    signing_kid: str
    issuers: Mapping[str, TrustedIssuer]
    # In the file's order: answers list the nodes in the order the operator wrote them.
    nodes: Mapping[Jurisdiction, NodeInfo]
    # JWKS sources, to be started (first load, then background refresh) by the running app.
    refreshing: tuple[RefreshingKeys, ...] = ()
    # The jurisdictions each issuer's permits count for; an issuer missing here counts for
    # any (a shared issuer).
    issuer_jurisdictions: Mapping[str, frozenset[Jurisdiction]] = field(default_factory=dict)

    @property
    def members(self) -> tuple[Jurisdiction, ...]:
        return tuple(self.nodes)

    def issues_permits_for(self, iss: str, jurisdiction: Jurisdiction) -> bool:
        """Whether a permit from `iss` may decide `jurisdiction`'s part of a question."""
        if iss not in self.issuers:
            return False
        allowed = self.issuer_jurisdictions.get(iss)
        return allowed is None or jurisdiction in allowed


def load_federation(path: Path) -> Federation:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise FederationError(
            f"cannot read the federation file {path}: {e.strerror} (give it with --federation "
            "or TESSERA_GATEWAY_FEDERATION)"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise FederationError(f"{path} is not valid TOML: {e}") from None
    try:
        config = FederationFile.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {_FIXES.get(err['type'], err['msg'])}"
            for err in e.errors()
        )
        raise FederationError(f"{path}: {problems}") from None
    try:
        return _federation(path.parent, config)
    except FederationError as e:
        raise FederationError(f"{path}: {e}") from None


def _federation(base: Path, config: FederationFile) -> Federation:
    refreshing: list[RefreshingKeys] = []
    return Federation(
        gateway_id=config.gateway.id,
        signing_key=load_signing_key(
            base / config.gateway.signing_key,
            setting="gateway.signing_key",
            error=FederationError,
            where="the federation file",
        ),
        signing_kid=config.gateway.signing_kid,
        issuers={
            i.iss: TrustedIssuer(
                iss=i.iss,
                keys=_issuer_keys(base, n, i, refreshing),
                algorithms=tuple(dict.fromkeys(i.algorithms)),
                leeway_s=i.leeway_s,
                max_lifetime_s=i.max_lifetime_s,
                types=frozenset(i.types),
            )
            for n, i in enumerate(config.issuers)
        },
        refreshing=tuple(refreshing),
        nodes={
            n.jurisdiction: NodeInfo(
                jurisdiction=n.jurisdiction,
                node_id=n.node_id,
                url=n.url,
                datasets=None if n.datasets is None else frozenset(n.datasets),
                pools=n.pools,
                latency=n.latency,
            )
            for n in config.nodes
        },
        issuer_jurisdictions={
            i.iss: frozenset(i.jurisdictions) for i in config.issuers if i.jurisdictions is not None
        },
    )


# What to do about a federation file's field, by pydantic's error type.
_FIXES: Final = {
    "extra_forbidden": "unknown field: remove it or correct its spelling",
    "missing": "a required field is missing: add it",
}


def _read(path: Path, field: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise FederationError(
            f"{field}: cannot read {path}: {e.strerror} (correct the path, relative to the "
            "federation file)"
        ) from None


def _issuer_keys(
    base: Path, number: int, issuer: IssuerSection, refreshing: list[RefreshingKeys]
) -> KeySource:
    if issuer.public_key is not None:
        path = base / issuer.public_key
        field = f"issuers.{number}.public_key"
        try:
            key = pem_public_key(_read(path, field), issuer.algorithms)
        except KeyMaterialError as e:
            raise FederationError(f"{field}: {path}: {e}") from None
        return StaticKeys(KeySet((key,)))
    initial = None
    if issuer.jwks_file is not None:
        path = base / issuer.jwks_file
        field = f"issuers.{number}.jwks_file"
        # Checked now, so that a broken file fails the start; re-read in the background.
        try:
            initial = parse_jwks(_read(path, field), issuer.algorithms)
        except KeyMaterialError as e:
            fix = " (publish public keys only: `tessera keys jwks`)" if "private" in str(e) else ""
            raise FederationError(f"{field}: {path}: {e}{fix}") from None
        fetch = file_fetch(path)
    else:
        assert issuer.jwks_url is not None  # exactly one source, checked by the model
        fetch = http_fetch(issuer.jwks_url)
    source = RefreshingKeys(
        fetch,
        issuer.algorithms,
        name=issuer.iss,
        refresh_s=issuer.refresh_s,
        min_refresh_s=min(MIN_REFRESH_S, issuer.refresh_s),
        initial=initial,
    )
    refreshing.append(source)
    return source
