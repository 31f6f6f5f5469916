"""What a node trusts, built from its settings: the pinned gateway keys (PEM files by kid
and/or a JWKS file), its own HDAB's keys for the researchers' approvals, and the replay
cache (an SQLite file in the node's state directory, which outlives restarts, or Redis,
shared by the node's replicas)."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis

from connectors.approval import ApprovalVerifier
from connectors.settings import PREFIX, ConnectorSettings
from schema.errors import SettingsError
from trust.keys import KeyMaterialError, KeySet, pem_public_key
from trust.keysource import (
    CombinedKeys,
    KeySource,
    RefreshingKeys,
    StaticKeys,
    file_fetch,
    http_fetch,
)
from trust.replay import RedisReplayCache, ReplayCache, SqliteReplayCache
from trust.request_token import ALGORITHM, load_verifying_keys, pinned
from trust.store import connect_redis
from trust.tokens import TokenVerifier, TrustedIssuer

# A pinned gateway JWKS file is a local file: cheap to re-read, and re-reading it is how a
# rotation reaches a running node.
GATEWAY_JWKS_REFRESH_S = 60.0
# In the node's state directory: the request ids seen, until their tokens expire.
REPLAY_FILE = "replay.sqlite3"


@dataclass
class NodeTrust:
    gateway_keys: KeySource
    approvals: ApprovalVerifier
    replay_cache: ReplayCache
    refreshing: list[RefreshingKeys] = field(default_factory=list)
    redis: Redis | None = None

    async def start(self) -> None:
        if isinstance(self.replay_cache, SqliteReplayCache):
            await self.replay_cache.open()  # a state directory it cannot write stops the node
        for source in self.refreshing:
            await source.start()

    async def stop(self) -> None:
        for source in self.refreshing:
            await source.stop()
        if isinstance(self.replay_cache, SqliteReplayCache):
            await self.replay_cache.close()
        if self.redis is not None:
            await self.redis.aclose()


def node_trust(settings: ConnectorSettings) -> NodeTrust:
    """Raises `SettingsError` when a configured key file cannot be read or is not a key."""
    refreshing: list[RefreshingKeys] = []
    try:
        sources: list[KeySource] = [pinned(load_verifying_keys(settings.gateway_keys))]
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{PREFIX}GATEWAY_KEYS: cannot load a key: {exc}") from exc
    if settings.gateway_jwks is not None:
        gateway_jwks = RefreshingKeys(
            file_fetch(settings.gateway_jwks),
            (ALGORITHM,),
            name="gateway keys",
            refresh_s=GATEWAY_JWKS_REFRESH_S,
        )
        refreshing.append(gateway_jwks)
        sources.append(gateway_jwks)
    redis = connect_redis(settings.redis_url) if settings.redis_url else None
    assert settings.state_dir is not None  # filled in by ConnectorSettings
    replay: ReplayCache = (
        RedisReplayCache(redis, prefix=settings.redis_prefix)
        if redis is not None
        else SqliteReplayCache(settings.state_dir / REPLAY_FILE)
    )
    hdab = _hdab_keys(settings, refreshing)
    verifier = (
        None
        if hdab is None
        else TokenVerifier(
            audience=settings.approval_audience,
            issuers=[
                TrustedIssuer(
                    iss=settings.hdab_issuer, keys=hdab, algorithms=settings.hdab_algorithms
                )
            ],
        )
    )
    return NodeTrust(
        gateway_keys=CombinedKeys(sources),
        approvals=ApprovalVerifier(verifier, settings.jurisdiction),
        replay_cache=replay,
        refreshing=refreshing,
        redis=redis,
    )


def _hdab_keys(settings: ConnectorSettings, refreshing: list[RefreshingKeys]) -> KeySource | None:
    if settings.hdab_public_key is not None:
        path = settings.hdab_public_key
        try:
            key = pem_public_key(path.read_bytes(), settings.hdab_algorithms)
        except OSError as exc:
            raise SettingsError(
                f"{PREFIX}HDAB_PUBLIC_KEY: cannot read {path}: {exc.strerror} (correct the path)"
            ) from None
        except KeyMaterialError as exc:
            raise SettingsError(f"{PREFIX}HDAB_PUBLIC_KEY: {path}: {exc}") from None
        return StaticKeys(KeySet((key,)))
    if settings.hdab_jwks_file is not None:
        fetch = file_fetch(settings.hdab_jwks_file)
    elif settings.hdab_jwks_url is not None:
        fetch = http_fetch(settings.hdab_jwks_url)
    else:
        return None
    source = RefreshingKeys(fetch, settings.hdab_algorithms, name=f"HDAB {settings.hdab_issuer}")
    refreshing.append(source)
    return source
