"""The gateway's process settings, read from the environment in this one place."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, TypeVar

from policies.live import DEFAULT_RELOAD_S, MAX_RELOAD_S, MIN_RELOAD_S
from schema.errors import SettingsError
from trust.store import check_redis_url

ENV_PREFIX: Final = "TESSERA_GATEWAY_"
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8400
DEFAULT_DEADLINE_S: Final = 10.0
DEFAULT_MAX_DEADLINE_S: Final = 60.0
# No query may ask for less: below this no node answers anyway.
MIN_DEADLINE_S: Final = 0.1
DEFAULT_MAX_QUERY_COST: Final = 20_000
DEFAULT_MAX_BATCH: Final = 4
# Questions (cohort fields) in flight at once: one researcher's, one application's.
DEFAULT_MAX_COHORTS_PER_RESEARCHER: Final = 32
DEFAULT_MAX_COHORTS_PER_APPLICATION: Final = 64
DEFAULT_REDIS_PREFIX: Final = "tessera:"
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})

T = TypeVar("T")


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or address, IPv6 with or without brackets) is this machine's
    loopback interface."""
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class PartialPools(StrEnum):
    """What becomes of a pooled number when some nodes failed (see `gateway.pool_guard`)."""

    MARK = "mark"  # released with a PARTIAL reason
    SUPPRESS = "suppress"  # suppressed with a PARTIAL reason


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
    - ``TESSERA_GATEWAY_NODE_TIMEOUT_S`` (default: the query's deadline): timeout of one node
      request in seconds (retries included); never longer than the query's deadline.
    - ``TESSERA_GATEWAY_MAX_DEADLINE_S`` (default ``60``): the longest deadline a query may
      ask for (``deadlineMs``); the shortest is 0.1 s.
    - ``TESSERA_GATEWAY_NODE_MAX_IN_FLIGHT`` (default ``16``): requests in flight to one node
      at most; also the connections kept per node.
    - ``TESSERA_GATEWAY_NODE_MAX_WAITING`` (default ``32``): requests waiting for a slot to
      one node at most; past that a node is ``UNAVAILABLE`` (``NODE_BUSY``) at once, unless
      the newcomer's researcher waits for fewer requests there than another researcher: then
      that researcher's newest waiting request gives up its place (and is ``NODE_BUSY``).
    - ``TESSERA_GATEWAY_NODE_MAX_IN_FLIGHT_PER_APPLICANT`` (default: half of
      ``NODE_MAX_IN_FLIGHT``, at least 1): in-flight slots of one node one researcher may
      hold; the others stay free for other researchers, and freed slots go round the
      researchers waiting.
    - ``TESSERA_GATEWAY_MAX_COHORTS_PER_RESEARCHER`` (default ``32``): ``cohort`` questions
      one researcher may have in flight at once. A request's questions (every ``cohort``
      field of every operation of a batch) are counted before any runs and admitted
      together or refused together at once (``TOO_MANY_IN_FLIGHT``).
    - ``TESSERA_GATEWAY_MAX_COHORTS_PER_APPLICATION`` (default ``64``): the same for all
      researchers of one application (the permits' application id, else their data
      request).
    - ``TESSERA_GATEWAY_NODE_RETRY_ATTEMPTS`` (default ``3``): attempts per node request in
      all, when the connection cannot be opened (nothing else is retried).
    - ``TESSERA_GATEWAY_CIRCUIT_FAILURES`` (default ``5``): failures in a row after which a
      node is not asked (``CIRCUIT_OPEN``) until a probe succeeds.
    - ``TESSERA_GATEWAY_CIRCUIT_RESET_S`` (default ``10``): seconds before an open circuit
      lets one probe request through.
    - ``TESSERA_GATEWAY_NODE_KEEPALIVE_S`` (default ``15``): seconds an idle connection to a
      node is kept; must be shorter than the idle timeout of the nodes and of any proxy in
      front of them (aiohttp servers: 75 s).
    - ``TESSERA_GATEWAY_PARTIAL_POOLS`` (default ``mark``): ``mark`` releases pooled numbers
      over the nodes that answered with a ``PARTIAL`` reason; ``suppress`` suppresses them.
    - ``TESSERA_GATEWAY_SHUTDOWN_TIMEOUT_S`` (default ``30``): on SIGTERM, how long in-flight
      queries may take to finish before they are cancelled.
    - ``TESSERA_GATEWAY_CONSOLE`` (default ``false``): serve the query console, a page for
      researchers, on ``GET /console`` and ``GET /graphql`` (``1``/``true``/``yes``/``on``
      to enable; see ``gateway.console``). Its files come with the package: nothing is
      loaded from another origin.
    - ``TESSERA_GATEWAY_CONSOLE_DEMO_CREDENTIALS`` (default: none): for the demo only, the
      directory ``tessera demo`` writes the researcher's tokens to (``researcher.jwt``,
      ``permits/*.jwt``); the console then pre-fills them, for anyone who can open it. Only
      with the console on and the gateway listening on loopback: a real deployment never
      hands tokens out; its researchers paste or load their own.
    - ``TESSERA_GATEWAY_POLICIES`` (default: the policy files shipped in ``policies/layers``):
      directory with the EU baseline ``eu.toml`` and ``jurisdictions/*.toml``; checked with
      ``tessera policy check DIR``.
    - ``TESSERA_GATEWAY_POLICY_RELOAD_S`` (default ``5``): seconds between two looks at the
      policy files; a change (a revoked permit, a tightened rule) is applied without a
      restart, at once on SIGHUP. A change that fails validation is not applied: the previous
      policy stays in force, the log and ``/readyz`` (``details.policy``) say why.
    - ``TESSERA_GATEWAY_AUDIT_DB`` (default ``audit.sqlite3`` beside the federation file): the
      audit trail, an SQLite file or a ``postgresql://`` URL.
    - ``TESSERA_GATEWAY_AUDIT_KEY`` (default: the gateway's signing key from the federation
      file): Ed25519 private key (PKCS8 PEM) that signs the audit chain's heads.

    Tracing is configured by the standard ``OTEL_*`` variables (see ``oversight.tracing``).
    - ``TESSERA_GATEWAY_INTROSPECTION`` (default ``false``): answer introspection queries
      (``__schema``, ``__type``). Off, schema names are not suggested in errors either.
    - ``TESSERA_GATEWAY_MAX_QUERY_COST`` (default ``20000``): the cost budget of one HTTP
      request: every ``cohort`` field costs, per node asked, one plus the cells of every
      breakdown it selects (bounded by its criteria, see ``gateway.graphql.limits``).
    - ``TESSERA_GATEWAY_MAX_BATCH`` (default ``4``): most operations in one batched request
      (a JSON array); ``1`` turns batching off.
    - ``TESSERA_GATEWAY_RATE_PER_RESEARCHER_PER_MINUTE`` and
      ``TESSERA_GATEWAY_RATE_PER_APPROVAL_PER_DAY`` (default: none): tighten the rate limits
      of the policy files (the strictest of the jurisdictions asked); they never loosen them.
      Without any policy for the jurisdictions asked, the limits are 60 and 1000.
    - ``TESSERA_GATEWAY_RATE_DB`` (default ``ratelimit.sqlite3`` beside the federation file):
      without Redis, the SQLite file the rate limits live in; they survive restarts (SIGKILL
      included), and the gateway processes of one host that name the same file share them.
    - ``TESSERA_GATEWAY_REDIS_URL`` (default: none, ``RATE_DB``): ``redis://host:port/db``;
      rate limits then live in Redis and every gateway replica using it shares them.
    - ``TESSERA_GATEWAY_REDIS_PREFIX`` (default ``tessera:``): prefix of the Redis keys.
    """

    federation: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    deadline_s: float = DEFAULT_DEADLINE_S
    # None: as long as the query's deadline (the default one, or the query's own).
    node_timeout_s: float | None = None
    max_deadline_s: float = DEFAULT_MAX_DEADLINE_S
    node_max_in_flight: int = 16
    node_max_waiting: int = 32
    # None: half of node_max_in_flight, at least 1.
    node_max_in_flight_per_applicant: int | None = None
    max_cohorts_per_researcher: int = DEFAULT_MAX_COHORTS_PER_RESEARCHER
    max_cohorts_per_application: int = DEFAULT_MAX_COHORTS_PER_APPLICATION
    node_retry_attempts: int = 3
    circuit_failures: int = 5
    circuit_reset_s: float = 10.0
    node_keepalive_s: float = 15.0
    partial_pools: PartialPools = PartialPools.MARK
    shutdown_timeout_s: float = 30.0
    console: bool = False
    console_demo_credentials: Path | None = None
    policies: Path | None = None
    policy_reload_s: float = DEFAULT_RELOAD_S
    audit_db: str = ""
    audit_key: Path | None = None
    introspection: bool = False
    max_query_cost: int = DEFAULT_MAX_QUERY_COST
    max_batch: int = DEFAULT_MAX_BATCH
    rate_per_researcher_per_minute: int | None = None
    rate_per_approval_per_day: int | None = None
    redis_url: str | None = None
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    rate_db: Path | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"{ENV_PREFIX}PORT must lie between 0 and 65535")
        if not MIN_DEADLINE_S <= self.max_deadline_s <= 600:
            raise SettingsError(f"{ENV_PREFIX}MAX_DEADLINE_S must lie in [0.1, 600] seconds")
        if not MIN_DEADLINE_S <= self.deadline_s <= self.max_deadline_s:
            raise SettingsError(f"{ENV_PREFIX}DEADLINE_S must lie in [0.1, MAX_DEADLINE_S] seconds")
        if self.node_timeout_s is not None and not self.node_timeout_s > 0:
            raise SettingsError(f"{ENV_PREFIX}NODE_TIMEOUT_S must be positive")
        bounds: dict[str, tuple[float, float, float]] = {
            "NODE_MAX_IN_FLIGHT": (self.node_max_in_flight, 1, 1024),
            "NODE_MAX_WAITING": (self.node_max_waiting, 0, 65536),
            "MAX_COHORTS_PER_RESEARCHER": (self.max_cohorts_per_researcher, 1, 65536),
            "MAX_COHORTS_PER_APPLICATION": (self.max_cohorts_per_application, 1, 65536),
            "NODE_RETRY_ATTEMPTS": (self.node_retry_attempts, 1, 10),
            "CIRCUIT_FAILURES": (self.circuit_failures, 1, 1000),
            "CIRCUIT_RESET_S": (self.circuit_reset_s, 0.01, 3600),
            "NODE_KEEPALIVE_S": (self.node_keepalive_s, 0.1, 3600),
            "SHUTDOWN_TIMEOUT_S": (self.shutdown_timeout_s, 0, 3600),
            "POLICY_RELOAD_S": (self.policy_reload_s, MIN_RELOAD_S, MAX_RELOAD_S),
        }
        if self.node_max_in_flight_per_applicant is not None:
            bounds["NODE_MAX_IN_FLIGHT_PER_APPLICANT"] = (
                self.node_max_in_flight_per_applicant,
                1,
                self.node_max_in_flight,
            )
        for var, (value, low, high) in bounds.items():
            if not low <= value <= high:
                raise SettingsError(f"{ENV_PREFIX}{var} must lie in [{low:g}, {high:g}]")
        if self.node_timeout_s is not None and self.node_timeout_s > self.max_deadline_s:
            # A node timeout beyond any deadline could never be waited for.
            object.__setattr__(self, "node_timeout_s", self.max_deadline_s)
        if not self.audit_db:
            object.__setattr__(self, "audit_db", str(self.federation.parent / "audit.sqlite3"))
        if self.rate_db is None:
            object.__setattr__(self, "rate_db", self.federation.parent / "ratelimit.sqlite3")
        if self.max_query_cost < 1:
            raise SettingsError(f"{ENV_PREFIX}MAX_QUERY_COST must be positive")
        if not 1 <= self.max_batch <= 64:
            raise SettingsError(f"{ENV_PREFIX}MAX_BATCH must lie between 1 and 64")
        for name, rate in (
            ("RATE_PER_RESEARCHER_PER_MINUTE", self.rate_per_researcher_per_minute),
            ("RATE_PER_APPROVAL_PER_DAY", self.rate_per_approval_per_day),
        ):
            if rate is not None and rate < 1:
                raise SettingsError(f"{ENV_PREFIX}{name} must be positive")
        if self.console_demo_credentials is not None:
            if not self.console:
                raise SettingsError(f"{ENV_PREFIX}CONSOLE_DEMO_CREDENTIALS needs the console on")
            if not is_loopback(self.host):
                raise SettingsError(
                    f"{ENV_PREFIX}CONSOLE_DEMO_CREDENTIALS is for a demo on loopback only: "
                    "a gateway others reach never hands out tokens"
                )
        if self.redis_url is not None:
            try:
                check_redis_url(self.redis_url)
            except ValueError as e:
                raise SettingsError(f"{ENV_PREFIX}REDIS_URL {e}") from None

    @property
    def node_share(self) -> int:
        """In-flight slots of one node one researcher may hold."""
        if self.node_max_in_flight_per_applicant is not None:
            return self.node_max_in_flight_per_applicant
        return max(1, self.node_max_in_flight // 2)

    def node_timeout(self, deadline_s: float) -> float:
        """The timeout of one node request for a query with this deadline."""
        return deadline_s if self.node_timeout_s is None else min(self.node_timeout_s, deadline_s)

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
            node_timeout_s=pick("node_timeout_s", "NODE_TIMEOUT_S", _float, None),
            max_deadline_s=pick(
                "max_deadline_s", "MAX_DEADLINE_S", _float, max(DEFAULT_MAX_DEADLINE_S, deadline)
            ),
            node_max_in_flight=pick("node_max_in_flight", "NODE_MAX_IN_FLIGHT", _int, 16),
            node_max_waiting=pick("node_max_waiting", "NODE_MAX_WAITING", _int, 32),
            node_max_in_flight_per_applicant=pick(
                "node_max_in_flight_per_applicant", "NODE_MAX_IN_FLIGHT_PER_APPLICANT", _int, None
            ),
            max_cohorts_per_researcher=pick(
                "max_cohorts_per_researcher",
                "MAX_COHORTS_PER_RESEARCHER",
                _int,
                DEFAULT_MAX_COHORTS_PER_RESEARCHER,
            ),
            max_cohorts_per_application=pick(
                "max_cohorts_per_application",
                "MAX_COHORTS_PER_APPLICATION",
                _int,
                DEFAULT_MAX_COHORTS_PER_APPLICATION,
            ),
            node_retry_attempts=pick("node_retry_attempts", "NODE_RETRY_ATTEMPTS", _int, 3),
            circuit_failures=pick("circuit_failures", "CIRCUIT_FAILURES", _int, 5),
            circuit_reset_s=pick("circuit_reset_s", "CIRCUIT_RESET_S", _float, 10.0),
            node_keepalive_s=pick("node_keepalive_s", "NODE_KEEPALIVE_S", _float, 15.0),
            partial_pools=pick("partial_pools", "PARTIAL_POOLS", _partial_pools, PartialPools.MARK),
            shutdown_timeout_s=pick("shutdown_timeout_s", "SHUTDOWN_TIMEOUT_S", _float, 30.0),
            console=pick("console", "CONSOLE", _bool, False),
            console_demo_credentials=pick(
                "console_demo_credentials", "CONSOLE_DEMO_CREDENTIALS", _path, None
            ),
            policies=pick("policies", "POLICIES", _path, None),
            policy_reload_s=pick("policy_reload_s", "POLICY_RELOAD_S", _float, DEFAULT_RELOAD_S),
            audit_db=pick("audit_db", "AUDIT_DB", _str, ""),
            audit_key=pick("audit_key", "AUDIT_KEY", _path, None),
            introspection=pick("introspection", "INTROSPECTION", _bool, False),
            max_query_cost=pick("max_query_cost", "MAX_QUERY_COST", _int, DEFAULT_MAX_QUERY_COST),
            max_batch=pick("max_batch", "MAX_BATCH", _int, DEFAULT_MAX_BATCH),
            rate_per_researcher_per_minute=pick(
                "rate_per_researcher_per_minute", "RATE_PER_RESEARCHER_PER_MINUTE", _int, None
            ),
            rate_per_approval_per_day=pick(
                "rate_per_approval_per_day", "RATE_PER_APPROVAL_PER_DAY", _int, None
            ),
            redis_url=pick("redis_url", "REDIS_URL", _str, None),
            redis_prefix=pick("redis_prefix", "REDIS_PREFIX", _str, DEFAULT_REDIS_PREFIX),
            rate_db=pick("rate_db", "RATE_DB", _path, None),
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


def _partial_pools(var: str, raw: str) -> PartialPools:
    try:
        return PartialPools(raw.lower())
    except ValueError:
        raise SettingsError(f"{ENV_PREFIX}{var} must be mark or suppress") from None


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _bool(var: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE | _FALSE:
        return lowered in _TRUE
    raise SettingsError(f"{ENV_PREFIX}{var} must be true or false")
