"""The gateway's process settings: every `TESSERA_GATEWAY_*` variable is one field below, its
description what `tessera gateway serve --help` prints (`serving.settings`)."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Self

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import SettingsConfigDict

from gateway.latency import LatencyClass, NodeTimeouts
from policies.live import DEFAULT_RELOAD_S, MAX_RELOAD_S, MIN_RELOAD_S
from schema.errors import SettingsError
from serving.settings import ServiceSettings, options
from trust.store import check_redis_url

__all__ = ["GatewaySettings", "PartialPools", "SettingsError", "is_loopback"]

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
# Questions fanning out and combining at once, per gateway process, and waiting for a turn
# (`gateway.admission`): a 1,000-question burst stays within ~300 MB (bench/README.md).
DEFAULT_MAX_ACTIVE_COHORTS: Final = 64
DEFAULT_MAX_WAITING_COHORTS: Final = 2048
DEFAULT_REDIS_PREFIX: Final = "tessera:"
MAX_PROCESSES: Final = 64
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})


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


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class GatewaySettings(ServiceSettings):
    """How one gateway process runs. Build it with `GatewaySettings.from_env`. Tracing is
    configured by the standard `OTEL_*` variables (see `oversight.tracing`)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)
    OPTIONS: ClassVar = options(
        "federation host port processes console console_demo_credentials policies audit_db "
        "audit_key",
        deadline_s="--deadline",
    )

    federation: Path = Field(
        description="Path to the federation TOML file (the gateway's identity and signing key, "
        "the trusted token issuers, the nodes)."
    )
    host: str = Field(DEFAULT_HOST, description="Address to listen on.")
    port: int = Field(DEFAULT_PORT, description="Port to listen on (0 picks a free one).")
    processes: int = Field(
        1,
        description="Gateway worker processes behind the one port, at most 64: a parent "
        "reserves it and forks them (`serving.prefork`), restarts one that dies once ready and "
        "stops them all on SIGTERM. Each writes an audit chain of its own in AUDIT_DB; rate "
        "limits are shared through RATE_DB or Redis; each worker holds its share of "
        "MAX_COHORTS_PER_RESEARCHER and MAX_COHORTS_PER_APPLICATION (see gateway.workers). "
        "About one per core.",
    )
    deadline_s: float = Field(
        DEFAULT_DEADLINE_S,
        description="Overall deadline of one query in seconds; nodes that have not answered "
        "by then are reported as TIMEOUT.",
    )
    node_timeout_s: float | None = Field(
        None,
        description="Timeout of one request to an interactive node (the default latency class) "
        "in seconds, retries included; never longer than the query's deadline. Default: the "
        "query's deadline.",
    )
    batch_node_timeout_s: float | None = Field(
        None,
        description="The same for the nodes the federation file puts in the batch latency class "
        '(latency = "batch": a hub on Spark or another distributed engine); never shorter '
        "than NODE_TIMEOUT_S (DEADLINE_S when that is unset), never longer than the query's "
        "deadline, so DEADLINE_S should cover it. Default: the query's deadline.",
    )
    max_deadline_s: float = Field(
        DEFAULT_MAX_DEADLINE_S,
        description="The longest deadline a query may ask for (deadlineMs); the shortest is "
        "0.1 s; never shorter than DEADLINE_S.",
    )
    node_max_in_flight: int = Field(
        16,
        description="Requests in flight to one node at most; also the connections kept per node.",
    )
    node_max_waiting: int = Field(
        32,
        description="Requests waiting for a slot to one node at most; past that a node is "
        "UNAVAILABLE (NODE_BUSY) at once, unless the newcomer's researcher waits for fewer "
        "requests there than another researcher: then that researcher's newest waiting request "
        "gives up its place (and is NODE_BUSY).",
    )
    node_max_in_flight_per_applicant: int | None = Field(
        None,
        description="In-flight slots of one node one researcher may hold; the others stay free "
        "for other researchers, and freed slots go round the researchers waiting. Default: half "
        "of NODE_MAX_IN_FLIGHT, at least 1.",
    )
    max_cohorts_per_researcher: int = Field(
        DEFAULT_MAX_COHORTS_PER_RESEARCHER,
        description="cohort questions one researcher may have in flight at once. A request's "
        "questions (every cohort field of every operation of a batch) are counted before any "
        "runs and admitted together or refused together at once (TOO_MANY_IN_FLIGHT).",
    )
    max_cohorts_per_application: int = Field(
        DEFAULT_MAX_COHORTS_PER_APPLICATION,
        description="The same for all researchers of one application (the permits' "
        "application id, else their data request).",
    )
    max_active_cohorts: int = Field(
        DEFAULT_MAX_ACTIVE_COHORTS,
        description="cohort questions fanning out to the nodes and combining their answers at "
        "once, whoever asks: what holds a question's node connections and parsed answers, and "
        "so the gateway's memory under a burst. The others wait for a turn in arrival order.",
    )
    max_waiting_cohorts: int = Field(
        DEFAULT_MAX_WAITING_COHORTS,
        description="cohort questions waiting for a turn at most, each no longer than its "
        "deadline; beyond them, or once its deadline passes waiting, a question is refused "
        "with GATEWAY_BUSY (retryAfter, and a Retry-After header) before any node is asked.",
    )
    question_tokens: bool = Field(
        True,
        description="Sign one request token per question for all its nodes (each node's own "
        "salted body hash in it) instead of one per node. Turn off while a node older than "
        "tessera-node-question+jwt is in the federation.",
    )
    node_retry_attempts: int = Field(
        3,
        description="Attempts per node request in all, when the connection cannot be opened "
        "(nothing else is retried).",
    )
    circuit_failures: int = Field(
        5,
        description="Failures in a row after which a node is not asked (CIRCUIT_OPEN) until a "
        "probe succeeds.",
    )
    circuit_reset_s: float = Field(
        10.0, description="Seconds before an open circuit lets one probe request through."
    )
    node_keepalive_s: float = Field(
        15.0,
        description="Seconds an idle connection to a node is kept; must be shorter than the "
        "idle timeout of the nodes and of any proxy in front of them (aiohttp servers: 75 s).",
    )
    partial_pools: Annotated[PartialPools, BeforeValidator(_lower)] = Field(
        PartialPools.MARK,
        description="mark releases pooled numbers over the nodes that answered with a PARTIAL "
        "reason; suppress suppresses them.",
    )
    shutdown_timeout_s: float = Field(
        30.0,
        description="On SIGTERM, how long in-flight queries may take to finish before they are "
        "cancelled.",
    )
    console: bool = Field(
        False,
        description="Serve the query console, a page for researchers, on GET /console and GET "
        "/graphql (1/true/yes/on to enable; see gateway.console). Its files come with the "
        "package: nothing is loaded from another origin.",
    )
    console_demo_credentials: Path | None = Field(
        None,
        description="For the demo only, the directory `tessera demo` writes the researcher's "
        "tokens to (researcher.jwt, permits/*.jwt); the console then pre-fills them, for anyone "
        "who can open it. Only with the console on and the gateway listening on loopback: a "
        "real deployment never hands tokens out; its researchers paste or load their own.",
    )
    policies: Path | None = Field(
        None,
        description="Directory with the EU baseline eu.toml and jurisdictions/*.toml; checked "
        "with `tessera policy check DIR`. Default: the policy files shipped in policies/layers.",
    )
    policy_reload_s: float = Field(
        DEFAULT_RELOAD_S,
        description="Seconds between two looks at the policy files; a change (a revoked "
        "permit, a tightened rule) is applied without a restart, at once on SIGHUP. A change "
        "that fails validation is not applied: the previous policy stays in force, the log and "
        "/readyz (details.policy) say why.",
    )
    audit_db: str = Field(
        "",
        description="The audit trail, an SQLite file or a postgresql:// URL. Default: "
        "audit.sqlite3 beside the federation file.",
    )
    audit_key: Path | None = Field(
        None,
        description="Ed25519 private key (PKCS8 PEM) that signs the audit chain's heads. "
        "Default: the gateway's signing key from the federation file.",
    )
    introspection: bool = Field(
        False,
        description="Answer introspection queries (__schema, __type). Off, schema names are not "
        "suggested in errors either.",
    )
    max_query_cost: int = Field(
        DEFAULT_MAX_QUERY_COST,
        description="The cost budget of one HTTP request: every cohort field costs, per node "
        "asked, one plus the cells of every breakdown it selects (bounded by its criteria, see "
        "gateway.graphql.limits).",
    )
    max_batch: int = Field(
        DEFAULT_MAX_BATCH,
        description="Most operations in one batched request (a JSON array); 1 turns batching off.",
    )
    rate_per_researcher_per_minute: int | None = Field(
        None,
        description="Tightens the per-researcher rate limit of the policy files (the strictest "
        "of the jurisdictions asked); it never loosens it. Without any policy for the "
        "jurisdictions asked, the limit is 60.",
    )
    rate_per_approval_per_day: int | None = Field(
        None,
        description="Tightens the per-approval daily limit of the policy files the same way; "
        "without any policy for the jurisdictions asked, the limit is 1000.",
    )
    redis_url: str | None = Field(
        None,
        description="redis://host:port/db; rate limits then live in Redis and every gateway "
        "replica using it shares them. Default: none, RATE_DB.",
    )
    redis_prefix: str = Field(DEFAULT_REDIS_PREFIX, description="Prefix of the Redis keys.")
    rate_db: Path | None = Field(
        None,
        description="Without Redis, the SQLite file the rate limits live in; they survive "
        "restarts (SIGKILL included), and the gateway processes of one host that name the same "
        "file share them. Default: ratelimit.sqlite3 beside the federation file.",
    )

    @model_validator(mode="before")
    @classmethod
    def _deadline_cap(cls, data: Any) -> Any:
        # A default deadline beyond the default cap raises the cap with it.
        if isinstance(data, dict) and data.get("max_deadline_s") is None:
            try:
                deadline = float(data.get("deadline_s", DEFAULT_DEADLINE_S))
            except (TypeError, ValueError):
                return data  # refused as a deadline, not as a cap
            return {**data, "max_deadline_s": max(DEFAULT_MAX_DEADLINE_S, deadline)}
        return data

    @model_validator(mode="after")
    def _checked(self) -> Self:
        variable = self.variable
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"{variable('port')} must lie between 0 and 65535")
        if not MIN_DEADLINE_S <= self.max_deadline_s <= 600:
            raise SettingsError(f"{variable('max_deadline_s')} must lie in [0.1, 600] seconds")
        if not MIN_DEADLINE_S <= self.deadline_s <= self.max_deadline_s:
            raise SettingsError(
                f"{variable('deadline_s')} must lie in [0.1, MAX_DEADLINE_S] seconds"
            )
        for name in ("node_timeout_s", "batch_node_timeout_s"):
            timeout = getattr(self, name)
            if timeout is not None and not timeout > 0:
                raise SettingsError(f"{variable(name)} must be positive")
        interactive = self.deadline_s if self.node_timeout_s is None else self.node_timeout_s
        if self.batch_node_timeout_s is not None and self.batch_node_timeout_s < interactive:
            # A batch node waited for less than an interactive one is a mistake, not a class.
            raise SettingsError(
                f"{variable('batch_node_timeout_s')} must not be shorter than "
                f"{variable('node_timeout_s')} (or {variable('deadline_s')} when that is unset)"
            )
        bounds: dict[str, tuple[float, float, float]] = {
            "processes": (self.processes, 1, MAX_PROCESSES),
            "node_max_in_flight": (self.node_max_in_flight, 1, 1024),
            "node_max_waiting": (self.node_max_waiting, 0, 65536),
            "max_cohorts_per_researcher": (self.max_cohorts_per_researcher, 1, 65536),
            "max_cohorts_per_application": (self.max_cohorts_per_application, 1, 65536),
            "max_active_cohorts": (self.max_active_cohorts, 1, 65536),
            "max_waiting_cohorts": (self.max_waiting_cohorts, 0, 1_000_000),
            "node_retry_attempts": (self.node_retry_attempts, 1, 10),
            "circuit_failures": (self.circuit_failures, 1, 1000),
            "circuit_reset_s": (self.circuit_reset_s, 0.01, 3600),
            "node_keepalive_s": (self.node_keepalive_s, 0.1, 3600),
            "shutdown_timeout_s": (self.shutdown_timeout_s, 0, 3600),
            "policy_reload_s": (self.policy_reload_s, MIN_RELOAD_S, MAX_RELOAD_S),
        }
        if self.node_max_in_flight_per_applicant is not None:
            bounds["node_max_in_flight_per_applicant"] = (
                self.node_max_in_flight_per_applicant,
                1,
                self.node_max_in_flight,
            )
        for name, (value, low, high) in bounds.items():
            if not low <= value <= high:
                raise SettingsError(f"{variable(name)} must lie in [{low:g}, {high:g}]")
        for name in ("node_timeout_s", "batch_node_timeout_s"):
            timeout = getattr(self, name)
            if timeout is not None and timeout > self.max_deadline_s:
                # A node timeout beyond any deadline could never be waited for.
                object.__setattr__(self, name, self.max_deadline_s)
        if not self.audit_db:
            object.__setattr__(self, "audit_db", str(self.federation.parent / "audit.sqlite3"))
        if self.rate_db is None:
            object.__setattr__(self, "rate_db", self.federation.parent / "ratelimit.sqlite3")
        if self.max_query_cost < 1:
            raise SettingsError(f"{variable('max_query_cost')} must be positive")
        if not 1 <= self.max_batch <= 64:
            raise SettingsError(f"{variable('max_batch')} must lie between 1 and 64")
        for name in ("rate_per_researcher_per_minute", "rate_per_approval_per_day"):
            rate = getattr(self, name)
            if rate is not None and rate < 1:
                raise SettingsError(f"{variable(name)} must be positive")
        if self.console_demo_credentials is not None:
            if not self.console:
                raise SettingsError(f"{variable('console_demo_credentials')} needs the console on")
            if not is_loopback(self.host):
                raise SettingsError(
                    f"{variable('console_demo_credentials')} is for a demo on loopback only: "
                    "a gateway others reach never hands out tokens"
                )
        if self.redis_url is not None:
            try:
                check_redis_url(self.redis_url)
            except ValueError as e:
                raise SettingsError(f"{variable('redis_url')} {e}") from None
        return self

    @property
    def node_share(self) -> int:
        """In-flight slots of one node one researcher may hold."""
        if self.node_max_in_flight_per_applicant is not None:
            return self.node_max_in_flight_per_applicant
        return max(1, self.node_max_in_flight // 2)

    @property
    def node_timeouts(self) -> NodeTimeouts:
        """Each latency class's node timeout."""
        return NodeTimeouts(interactive=self.node_timeout_s, batch=self.batch_node_timeout_s)

    def node_timeout(
        self, deadline_s: float, latency: LatencyClass = LatencyClass.INTERACTIVE
    ) -> float:
        """The timeout of one request to a node of class `latency` for a query with this
        deadline."""
        return self.node_timeouts.within(deadline_s, latency)

    @property
    def full_timeouts(self) -> dict[LatencyClass, float]:
        """What each class's node is given under the default deadline: a time-out after less
        (a researcher's short deadlineMs) says nothing about the node."""
        return {c: self.node_timeout(self.deadline_s, c) for c in LatencyClass}
