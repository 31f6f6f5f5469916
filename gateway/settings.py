"""The gateway's process settings, read from the environment in this one place."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

ENV_PREFIX: Final = "TESSERA_GATEWAY_"
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8400
DEFAULT_DEADLINE_S: Final = 10.0

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """How one gateway process runs. Build it with `GatewaySettings.from_env`.

    Environment variables:

    - ``TESSERA_GATEWAY_FEDERATION`` (required): path to the federation TOML file (the gateway's
      identity and signing key, the trusted token issuers, the nodes).
    - ``TESSERA_GATEWAY_HOST`` (default ``127.0.0.1``): address to listen on.
    - ``TESSERA_GATEWAY_PORT`` (default ``8400``): port to listen on (0 picks a free one).
    - ``TESSERA_GATEWAY_DEADLINE_S`` (default ``10``): overall deadline of one query in
      seconds; nodes that have not answered by then are reported as ``TIMEOUT``.
    - ``TESSERA_GATEWAY_NODE_TIMEOUT_S`` (default: the deadline): timeout of one node request
      in seconds; never longer than the deadline.
    - ``TESSERA_GATEWAY_GRAPHIQL`` (default ``false``): serve GraphiQL on ``GET /graphql``
      (``1``/``true``/``yes``/``on`` to enable).
    - ``TESSERA_GATEWAY_POLICIES`` (default: the policy files shipped in ``policies/layers``):
      directory with the EU baseline ``eu.toml`` and ``jurisdictions/*.toml``; checked with
      ``tessera policy check DIR``.
    - ``TESSERA_GATEWAY_AUDIT_DB`` (default ``audit.sqlite3`` beside the federation file): the
      audit trail, an SQLite file or a ``postgresql://`` URL.
    - ``TESSERA_GATEWAY_AUDIT_KEY`` (default: the gateway's signing key from the federation
      file): Ed25519 private key (PKCS8 PEM) that signs the audit chain's heads.

    Tracing is configured by the standard ``OTEL_*`` variables (see ``schema.telemetry``).
    """

    federation: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    deadline_s: float = DEFAULT_DEADLINE_S
    node_timeout_s: float = DEFAULT_DEADLINE_S
    graphiql: bool = False
    policies: Path | None = None
    audit_db: str = ""
    audit_key: Path | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"{ENV_PREFIX}PORT must lie between 0 and 65535")
        if not 0 < self.deadline_s <= 600:
            raise SettingsError(f"{ENV_PREFIX}DEADLINE_S must lie in (0, 600] seconds")
        if not self.node_timeout_s > 0:
            raise SettingsError(f"{ENV_PREFIX}NODE_TIMEOUT_S must be positive")
        if self.node_timeout_s > self.deadline_s:
            # A node timeout beyond the deadline could never be waited for.
            object.__setattr__(self, "node_timeout_s", self.deadline_s)
        if not self.audit_db:
            object.__setattr__(self, "audit_db", str(self.federation.parent / "audit.sqlite3"))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> GatewaySettings:
        """Settings from `environ` (default `os.environ`); keyword `overrides` (field names,
        e.g. from command-line options) win over the environment."""
        env = os.environ if environ is None else environ
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown gateway settings: {', '.join(sorted(unknown))}")
        given = {k: v for k, v in overrides.items() if v is not None}

        def pick(name: str, var: str, parse: Callable[[str, str], T], default: T) -> T:
            if name in given:
                value: T = given[name]
                return value
            raw = env.get(ENV_PREFIX + var)
            return default if raw is None or raw.strip() == "" else parse(var, raw.strip())

        federation = pick("federation", "FEDERATION", _path, None)
        if federation is None:
            raise SettingsError(f"{ENV_PREFIX}FEDERATION is required (path to federation.toml)")
        deadline = pick("deadline_s", "DEADLINE_S", _float, DEFAULT_DEADLINE_S)
        return cls(
            federation=Path(federation),
            host=pick("host", "HOST", _str, DEFAULT_HOST),
            port=pick("port", "PORT", _int, DEFAULT_PORT),
            deadline_s=deadline,
            node_timeout_s=pick("node_timeout_s", "NODE_TIMEOUT_S", _float, deadline),
            graphiql=pick("graphiql", "GRAPHIQL", _bool, False),
            policies=pick("policies", "POLICIES", _path, None),
            audit_db=pick("audit_db", "AUDIT_DB", _str, ""),
            audit_key=pick("audit_key", "AUDIT_KEY", _path, None),
        )


def _str(_var: str, raw: str) -> str:
    return raw


def _path(_var: str, raw: str) -> Path | None:
    return Path(raw)


def _int(var: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{ENV_PREFIX}{var} must be an integer") from None


def _float(var: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{ENV_PREFIX}{var} must be a number of seconds") from None


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _bool(var: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE | _FALSE:
        return lowered in _TRUE
    raise SettingsError(f"{ENV_PREFIX}{var} must be true or false")
