"""What a node needs to take part in secure pooling: its own X25519 private key and the
pooling registry, every node's X25519 public key by node id.

The registry is one JSON object, `{"tessera-node-fr": "<base64url of the 32-byte public
key>", ...}`, the same file at every node of the federation (written by `tessera keys
registry`). Every node trusts it the way it trusts the gateway's JWKS: a file the hub
installs, re-read when it changes (each pooled round looks at the file's modification time,
so a node added to the federation needs no restart). A registry that cannot be read, or that
names another key for this node, is refused: at start-up the node does not start, later the
last good registry stays in force and the log says why.

The pairwise secrets (`connectors.masking.pair_secret`) are computed once per peer key and
kept in memory only.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from connectors.masking import pair_secret
from schema.errors import ConfigError

log = logging.getLogger(__name__)

KEY_BYTES: Final = 32
MAX_NODES: Final = 256
MAX_REGISTRY_BYTES: Final = 64 * 1024
_NODE_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


class PoolKeyError(ConfigError):
    """A pooling key or registry that cannot be used; the message says why (never a key)."""


def raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def encode_public(key: X25519PublicKey) -> str:
    return base64.urlsafe_b64encode(raw_public(key)).rstrip(b"=").decode()


def parse_registry(document: bytes) -> dict[str, bytes]:
    """Node id → raw public key. Raises PoolKeyError for anything but a well-formed registry."""
    if len(document) > MAX_REGISTRY_BYTES:
        raise PoolKeyError(f"the pooling registry is larger than {MAX_REGISTRY_BYTES} bytes")
    try:
        data = orjson.loads(document)
    except orjson.JSONDecodeError:
        raise PoolKeyError("the pooling registry is not JSON") from None
    if not isinstance(data, dict) or not data:
        raise PoolKeyError("the pooling registry must be a non-empty object of node id: key")
    if len(data) > MAX_NODES:
        raise PoolKeyError(f"the pooling registry names more than {MAX_NODES} nodes")
    registry: dict[str, bytes] = {}
    seen: set[bytes] = set()
    for node_id, text in data.items():
        if not _NODE_ID.fullmatch(node_id):
            raise PoolKeyError("the pooling registry has a malformed node id")
        if not isinstance(text, str):
            raise PoolKeyError(f"the pooling registry's key of {node_id} is not a string")
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise PoolKeyError(f"the registry's key of {node_id} is not base64url") from None
        if len(raw) != KEY_BYTES:
            raise PoolKeyError(f"the pooling registry's key of {node_id} is not 32 bytes")
        if raw in seen:
            # Two nodes with one key would share every mask with a third party.
            raise PoolKeyError(f"the pooling registry gives {node_id} another node's key")
        seen.add(raw)
        registry[node_id] = raw
    return registry


class UnknownPeer(LookupError):
    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.node_id = node_id


@dataclass
class PoolKeys:
    """This node's pooling key and the registry it trusts, re-read when the file changes."""

    node_id: str
    private_key: X25519PrivateKey
    registry_path: Path
    _registry: dict[str, bytes] = field(default_factory=dict)
    _stamp: tuple[int, int] | None = None
    _secrets: dict[tuple[str, bytes], bytes] = field(default_factory=dict)

    @classmethod
    def load(cls, node_id: str, key: X25519PrivateKey, registry: Path) -> PoolKeys:
        """This node's `key` (`trust.private_keys.load_pooling_key`) and the registry in `registry`;
        raises PoolKeyError when the registry cannot be used."""
        keys = cls(node_id, key, registry)
        keys._reload(strict=True)
        return keys

    def _reload(self, *, strict: bool) -> None:
        try:
            stat = self.registry_path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return
            registry = self._checked(parse_registry(self.registry_path.read_bytes()))
        except (OSError, PoolKeyError) as exc:
            message = exc if isinstance(exc, PoolKeyError) else type(exc).__name__
            if strict:
                raise PoolKeyError(f"pooling registry: {message}") from None
            log.error("pooling registry not reloaded, the previous one stays: %s", message)
            return
        if self._stamp is not None:
            log.info("pooling registry reloaded: %d nodes", len(registry))
        self._registry, self._stamp = registry, stamp

    def _checked(self, registry: dict[str, bytes]) -> dict[str, bytes]:
        own = registry.get(self.node_id)
        if own is None:
            raise PoolKeyError(f"it does not list this node ({self.node_id})")
        if own != raw_public(self.private_key.public_key()):
            raise PoolKeyError(f"it names another key for this node ({self.node_id})")
        return registry

    def peers(self) -> Mapping[str, bytes]:
        """The registry in force (re-read first if the file changed)."""
        self._reload(strict=False)
        return self._registry

    def secrets(self, participants: Sequence[str]) -> dict[str, bytes]:
        """s_ij for every other participant j. Raises UnknownPeer for a node the registry does
        not list."""
        registry = self.peers()
        found: dict[str, bytes] = {}
        for peer in participants:
            if peer == self.node_id:
                continue
            raw = registry.get(peer)
            if raw is None:
                raise UnknownPeer(peer)
            secret = self._secrets.get((peer, raw))
            if secret is None:
                try:
                    secret = pair_secret(self.private_key, X25519PublicKey.from_public_bytes(raw))
                except ValueError:
                    raise UnknownPeer(peer) from None  # a key of small order: unusable
                self._secrets[(peer, raw)] = secret
            found[peer] = secret
        return found
