"""A whole federation on loopback: keys, synthetic databases, configuration, processes.

`tessera demo` and the integration tests both build their federation here, so the tests
exercise exactly what a newcomer runs.

Trust is set up as the EHDS has it: every member has its own HDAB with its own keys
(`hdab-fr`, `hdab-de`, ...), trusted by its own node only and by the gateway for its own
jurisdiction only; researchers authenticate with a token from an identity issuer
(`IDENTITY_ISSUER`) whose tokens are never permits. A researcher's question carries one
permit per jurisdiction (`permits`, `credentials`). Every connector has a secure pooling key
(`pool-fr`, ...), and every connector is given the pooling registry of all of them
(`keys/pool-peers.json`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from schema.approval import Approval, Role
from schema.codes import Jurisdiction
from tessera.credentials import Credentials
from tessera.keys import (
    Rotation,
    ensure_keypair,
    ensure_rotated,
    jwks_path,
    private_key_path,
    public_key_path,
    write_pool_registry,
)
from tessera.locations import GATEWAY_URL_FILE
from tessera.processes import Service, Supervisor
from tessera.tokens import (
    DEMO_APPLICATION,
    DEMO_AUDIENCE,
    DEMO_RESEARCHER,
    IDENTITY_ISSUER,
    demo_approval,
    demo_request_id,
    hdab_issuer,
    mint_token,
    token_claims,
)

# Key families: the gateway's request-signing keys, the identity issuer's keys and each
# HDAB's permit keys, each published as FAMILY.jwks.json (see `tessera keys rotate`).
GATEWAY_KEYS = "gateway"
IDENTITY_KEYS = "identity"


# A directory where `synthesise` keeps each node database it generates, with the fresh state
# it was prepared against, and copies them from on the next request for the same data (the
# test suite starts many federations of the same synthetic nodes). Unset: always generated.
SYNTH_CACHE_ENV = "TESSERA_SYNTH_CACHE"


def hdab_keys(jurisdiction: Jurisdiction) -> str:
    return f"hdab-{jurisdiction.value.lower()}"


@dataclass
class LocalFederation:
    directory: Path
    jurisdictions: Sequence[Jurisdiction]
    persons: int
    seed: int = 42
    host: str = "127.0.0.1"
    gateway_port: int = 8400
    node_ports: Sequence[int] = ()
    # The gateway serves the query console, with this federation's researcher credentials
    # pre-filled (the demo's; loopback only).
    console: bool = True
    # A hub's own policy layer per jurisdiction (the node's final veto), if any.
    node_policies: Mapping[Jurisdiction, Path] = field(default_factory=dict)
    # Nodes whose OMOP CDM lives in PostgreSQL (a `postgresql://` URL) instead of DuckDB.
    dsns: Mapping[Jurisdiction, str] = field(default_factory=dict)
    # Extra environment of every service process (e.g. `OTEL_*` to export traces).
    env: Mapping[str, str] = field(default_factory=dict)
    # The policy directory every service loads (default: the shipped one).
    policies: Path | None = None
    # Shared state for rate limits (gateways) and the replay cache (connectors).
    redis_url: str | None = None
    redis_prefix: str = "tessera:"
    supervisor: Supervisor = field(default_factory=Supervisor)
    # Nodes served by something other than a connector of this federation (by URL), e.g. the
    # misbehaving nodes of fault-injection tests: in the federation file and the approval.
    extra_nodes: Mapping[Jurisdiction, str] = field(default_factory=dict)
    # TESSERA_GATEWAY_* settings for the gateway process.
    gateway_env: Mapping[str, str] = field(default_factory=dict)
    # Whether the connectors take part in secure pooling (pooling keys, registry, `pools`).
    pooling: bool = True
    # The vocabulary each node's synthetic CDM records diagnoses in, when not WHO ICD10
    # (e.g. DE: ICD10GM, FR: CIM10, as real national CDMs do).
    icd10_vocabularies: Mapping[Jurisdiction, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.node_ports:
            self.node_ports = [self.gateway_port + 1 + i for i in range(len(self.jurisdictions))]

    # -- layout ---------------------------------------------------------------------------
    @property
    def keys_dir(self) -> Path:
        return self.directory / "keys"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def logs_dir(self) -> Path:
        return self.directory / "logs"

    @property
    def federation_file(self) -> Path:
        return self.directory / "federation.toml"

    @property
    def token_file(self) -> Path:
        return self.directory / "researcher.jwt"

    @property
    def compliance_token_file(self) -> Path:
        return self.directory / "compliance.jwt"

    @property
    def permits_dir(self) -> Path:
        return self.directory / "permits"

    def permit_file(self, jurisdiction: Jurisdiction) -> Path:
        return self.permits_dir / f"{jurisdiction.value.lower()}.jwt"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}/graphql"

    @property
    def console_url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}/console"

    @property
    def members(self) -> list[Jurisdiction]:
        return [*self.jurisdictions, *(j for j in self.extra_nodes if j not in self.jurisdictions)]

    def node_url(self, jurisdiction: Jurisdiction) -> str:
        if jurisdiction in self.extra_nodes:
            return self.extra_nodes[jurisdiction]
        port = self.node_ports[list(self.jurisdictions).index(jurisdiction)]
        return f"http://{self.host}:{port}"

    def database(self, jurisdiction: Jurisdiction) -> Path:
        return self.data_dir / f"{jurisdiction.value.lower()}.duckdb"

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    def node_state(self, jurisdiction: Jurisdiction) -> Path:
        """The node's state directory: its privacy ledger, its stored answers and its person
        secret and index (`tessera connector prepare --state`), kept across restarts of the
        federation and rebuilds of its database."""
        return self.state_dir / jurisdiction.value.lower()

    # The audit trails: each service its own SQLite file and chain. The gateway signs its
    # chain heads with its request-signing key; each node has an audit key of its own.
    @property
    def gateway_audit_db(self) -> Path:
        return self.directory / "audit" / "gateway.sqlite3"

    def audit_db(self, jurisdiction: Jurisdiction) -> Path:
        return self.directory / "audit" / f"node-{jurisdiction.value.lower()}.sqlite3"

    @staticmethod
    def audit_key_name(jurisdiction: Jurisdiction) -> str:
        return f"audit-{jurisdiction.value.lower()}"

    @staticmethod
    def pool_key_name(jurisdiction: Jurisdiction) -> str:
        return f"pool-{jurisdiction.value.lower()}"

    @property
    def pool_registry(self) -> Path:
        """Every connector's X25519 public key by node id: the same file at every node."""
        return self.keys_dir / "pool-peers.json"

    @property
    def gateway_key(self) -> Rotation:
        return ensure_rotated(self.keys_dir, GATEWAY_KEYS)

    def hdab_key(self, jurisdiction: Jurisdiction) -> Rotation:
        return ensure_rotated(self.keys_dir, hdab_keys(jurisdiction))

    @property
    def identity_key(self) -> Rotation:
        return ensure_rotated(self.keys_dir, IDENTITY_KEYS)

    def audit_trails(self) -> dict[str, tuple[Path, Path]]:
        """Every service's audit trail and the public key its chain heads are signed with, by
        service name (as in the supervisor): what `tessera audit verify` is given."""
        trails = {"gateway": (self.gateway_audit_db, self.gateway_key.public_key)}
        for j in self.jurisdictions:
            key = public_key_path(self.keys_dir, self.audit_key_name(j))
            trails[f"connector {j.value}"] = (self.audit_db(j), key)
        return trails

    # -- set-up ---------------------------------------------------------------------------
    def prepare_keys(self) -> None:
        """The gateway's, the identity issuer's and every member's HDAB keys (with their
        JWKS) and each node's audit key."""
        self.directory.mkdir(parents=True, exist_ok=True)
        ensure_rotated(self.keys_dir, GATEWAY_KEYS)
        ensure_rotated(self.keys_dir, IDENTITY_KEYS)
        for jurisdiction in self.members:
            ensure_rotated(self.keys_dir, hdab_keys(jurisdiction))
        for jurisdiction in self.jurisdictions:
            ensure_keypair(self.keys_dir, self.audit_key_name(jurisdiction))
            ensure_keypair(self.keys_dir, self.pool_key_name(jurisdiction), kind="x25519")
        write_pool_registry(
            {
                self.node_id(j): public_key_path(self.keys_dir, self.pool_key_name(j))
                for j in self.jurisdictions
            },
            self.pool_registry,
        )

    def prepare(self, *, progress: bool = False) -> None:
        self.prepare_keys()
        for jurisdiction in self.jurisdictions:
            self.synthesise(jurisdiction, progress=progress)
        self.write_federation()
        self.write_credentials()

    def write_credentials(self) -> None:
        """The researcher's identity token, one permit per member from its own HDAB, and a
        compliance officer's token (identity only)."""
        self.token_file.write_text(self.identity() + "\n")
        # Where the gateway listens, for clients that find the demo by its directory.
        (self.directory / GATEWAY_URL_FILE).write_text(self.gateway_url + "\n")
        self.permits_dir.mkdir(parents=True, exist_ok=True)
        for jurisdiction, permit in self.permits().items():
            self.permit_file(jurisdiction).write_text(permit + "\n")
        compliance = self.identity("compliance@demo.tessera.eu", roles=(Role.COMPLIANCE,))
        self.compliance_token_file.write_text(compliance + "\n")

    def synthesise(self, jurisdiction: Jurisdiction, *, progress: bool) -> None:
        """Generate a node's database unless one with the same parameters exists."""
        from synth import generate

        path = self.database(jurisdiction)
        manifest = path.with_suffix(".json")
        state = self.node_state(jurisdiction)
        wanted = {
            "jurisdiction": jurisdiction.value,
            "persons": self.persons,
            "seed": self.seed,
            "state": str(state),  # prepared against this state directory
            "icd10_vocabulary": self.icd10_vocabularies.get(jurisdiction, "ICD10"),
        }
        if path.exists() and manifest.exists() and json.loads(manifest.read_text()) == wanted:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cache = os.environ.get(SYNTH_CACHE_ENV, "").strip()
        if cache and not state.exists():
            entry = self._cached_synthesis(Path(cache), jurisdiction, progress=progress)
            shutil.copyfile(entry / "cdm.duckdb", path)
            shutil.copytree(entry / "state", state)
            manifest.write_text(json.dumps(wanted))
            return
        if progress:
            print(
                f"synthesising {self.persons:,} persons for {jurisdiction.value} …", file=sys.stderr
            )
        generate(
            path,
            jurisdiction=jurisdiction,
            persons=self.persons,
            seed=self.seed,
            state=state,
            progress=progress,
            icd10_vocabulary=self.icd10_vocabularies.get(jurisdiction, "ICD10"),
        )
        manifest.write_text(json.dumps(wanted))

    def _cached_synthesis(self, cache: Path, jurisdiction: Jurisdiction, *, progress: bool) -> Path:
        """A node's database and the fresh state it was prepared against, generated once per
        jurisdiction, size, seed and vocabulary under `cache` (`SYNTH_CACHE_ENV`). A copy of
        both is what a new generation would be, up to its random person secret."""
        from synth import generate

        vocabulary = self.icd10_vocabularies.get(jurisdiction, "ICD10")
        entry = cache / f"{jurisdiction.value.lower()}-{self.persons}-{self.seed}-{vocabulary}"
        if entry.is_dir():
            return entry
        building = cache / f".{entry.name}.{os.getpid()}.partial"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        if progress:
            print(
                f"synthesising {self.persons:,} persons for {jurisdiction.value} …", file=sys.stderr
            )
        generate(
            building / "cdm.duckdb",
            jurisdiction=jurisdiction,
            persons=self.persons,
            seed=self.seed,
            state=building / "state",
            progress=progress,
            icd10_vocabulary=vocabulary,
        )
        try:
            building.rename(entry)
        except OSError:  # another process cached the same entry first
            shutil.rmtree(building, ignore_errors=True)
        return entry

    def write_federation(self) -> None:
        gateway = self.gateway_key
        nodes = "\n".join(
            f'[[nodes]]\njurisdiction = "{j.value}"\nnode_id = "{self.node_id(j)}"\n'
            f'url = "{self.node_url(j)}"\n'
            + ("pools = true\n" if self.pooling and j in self.jurisdictions else "")
            for j in self.members
        )
        hdabs = "\n".join(
            f"# {j.value}'s health data access body: its permits decide {j.value} only.\n"
            "[[issuers]]\n"
            f'iss = "{hdab_issuer(j)}"\n'
            f'jwks_file = "keys/{jwks_path(Path(), hdab_keys(j))}"\n'
            'algorithms = ["EdDSA"]\n'
            f'jurisdictions = ["{j.value}"]\n'
            for j in self.members
        )
        self.federation_file.write_text(
            "# Written by `tessera demo`: the federation this gateway fans out to.\n"
            "[gateway]\n"
            f'id = "{DEMO_AUDIENCE}"\n'
            f'signing_key = "keys/{gateway.private_key.name}"\n'
            f'signing_kid = "{gateway.kid}"\n\n'
            "# Who researchers are: identity only, never a permit.\n"
            "[[issuers]]\n"
            f'iss = "{IDENTITY_ISSUER}"\n'
            f'jwks_file = "keys/{jwks_path(Path(), IDENTITY_KEYS)}"\n'
            'algorithms = ["EdDSA"]\n'
            "jurisdictions = []\n\n" + hdabs + "\n" + nodes
        )

    @staticmethod
    def node_id(jurisdiction: Jurisdiction) -> str:
        return f"tessera-node-{jurisdiction.value.lower()}"

    def datasets(self, jurisdiction: Jurisdiction) -> list[str]:
        """The datasets a member's node serves: its node layer's, or one named after it."""
        node_policy = self.node_policies.get(jurisdiction)
        if node_policy is not None:
            from policies.loader import load_node_layer

            named = sorted(load_node_layer(node_policy).node.datasets)
            if named:
                return named
        return [self.node_id(jurisdiction)]

    # -- tokens ---------------------------------------------------------------------------
    def mint(
        self,
        approval: Approval | None,
        *,
        hdab: Jurisdiction | None = None,
        subject: str = DEMO_RESEARCHER,
        **kwargs: object,
    ) -> str:
        """A token of `hdab`'s HDAB carrying `approval` (a permit), or, without `hdab`, of the
        identity issuer (whose tokens are never permits, approval or not). Keyword arguments
        go to `token_claims` (roles, ttl_s, now, ...)."""
        key = self.identity_key if hdab is None else self.hdab_key(hdab)
        claims = token_claims(
            issuer=IDENTITY_ISSUER if hdab is None else hdab_issuer(hdab),
            audience=DEMO_AUDIENCE,
            subject=subject,
            approval=approval,
            **kwargs,  # type: ignore[arg-type]
        )
        return mint_token(key.private_key, claims, kid=key.kid)

    def identity(
        self, subject: str = DEMO_RESEARCHER, *, roles: Sequence[Role] = (Role.RESEARCHER,)
    ) -> str:
        """The researcher's bearer token: who they are, not what they may ask."""
        return self.mint(None, subject=subject, roles=roles)

    def permit_approval(self, jurisdiction: Jurisdiction, **changes: object) -> Approval:
        """What `jurisdiction`'s HDAB grants the demo researcher: its own part of the
        application `DEMO_APPLICATION`, under a data request id of its own, for its node's
        datasets; `changes` replace fields (e.g. `request_id`, `purpose`, `datasets`)."""
        approval = demo_approval(
            [jurisdiction],
            demo_request_id(jurisdiction),
            application_id=DEMO_APPLICATION,
            datasets=self.datasets(jurisdiction),
        )
        return Approval.model_validate({**approval.model_dump(), **changes})

    def permit(
        self,
        jurisdiction: Jurisdiction,
        approval: Approval | None = None,
        *,
        hdab: Jurisdiction | None = None,
        subject: str = DEMO_RESEARCHER,
        **kwargs: object,
    ) -> str:
        """`jurisdiction`'s permit (by default `permit_approval`), signed by its own HDAB, or
        by `hdab`'s (a permit the wrong HDAB issued)."""
        return self.mint(
            approval or self.permit_approval(jurisdiction),
            hdab=jurisdiction if hdab is None else hdab,
            subject=subject,
            **kwargs,
        )

    def permits(
        self,
        jurisdictions: Sequence[Jurisdiction] | None = None,
        *,
        subject: str = DEMO_RESEARCHER,
        **changes: object,
    ) -> dict[Jurisdiction, str]:
        """One permit per jurisdiction (default: every member), each from its own HDAB;
        `changes` apply to every permit's approval."""
        return {
            j: self.permit(j, self.permit_approval(j, **changes), subject=subject)
            for j in (self.members if jurisdictions is None else jurisdictions)
        }

    def credentials(
        self,
        permits: Mapping[Jurisdiction, str] | Sequence[str] | None = None,
        *,
        subject: str = DEMO_RESEARCHER,
    ) -> Credentials:
        """A bearer token for `subject` and `permits` (default: a fresh permit per member)."""
        chosen = self.permits(subject=subject) if permits is None else permits
        values = chosen.values() if isinstance(chosen, Mapping) else chosen
        return Credentials.of(self.identity(subject), values)

    def researcher(self) -> Credentials:
        """The researcher's credentials as `prepare` wrote them to files."""
        return Credentials.read(self.token_file, (self.permit_file(j) for j in self.members))

    # -- processes ------------------------------------------------------------------------
    def connector_service(
        self, jurisdiction: Jurisdiction, *, port: int | None = None, name: str | None = None
    ) -> Service:
        """A connector of `jurisdiction`: on its port in the federation file, or on `port`
        (a replica of the same node, e.g. behind a load balancer, with a trail of its own)."""
        replica = port is not None
        if port is None:
            port = self.node_ports[list(self.jurisdictions).index(jurisdiction)]
        node_policy = self.node_policies.get(jurisdiction)
        extra = ["--node-policy", str(node_policy)] if node_policy else []
        if self.policies is not None:
            extra += ["--policies", str(self.policies)]
        redis = ["--redis-url", self.redis_url] if self.redis_url else []
        if self.pooling:
            pool_key = private_key_path(self.keys_dir, self.pool_key_name(jurisdiction))
            extra += ["--pool-key", str(pool_key), "--pool-peers", str(self.pool_registry)]
        env = dict(self.env)
        if self.redis_url:
            env["TESSERA_CONNECTOR_REDIS_PREFIX"] = self.redis_prefix
        audit_db = self.audit_db(jurisdiction)
        if replica:
            audit_db = audit_db.with_name(f"{audit_db.stem}-{port}.sqlite3")
        return Service(
            name=name or f"connector {jurisdiction.value}",
            args=[
                "connector",
                "serve",
                "--jurisdiction",
                jurisdiction.value,
                *self.database_args(jurisdiction),
                "--host",
                self.host,
                "--port",
                str(port),
                "--gateway-jwks",
                str(jwks_path(self.keys_dir, GATEWAY_KEYS)),
                # The node checks permits itself, against its own HDAB's keys only.
                "--hdab-issuer",
                hdab_issuer(jurisdiction),
                "--hdab-jwks-file",
                str(jwks_path(self.keys_dir, hdab_keys(jurisdiction))),
                *redis,
                *extra,
                "--state",
                str(self.node_state(jurisdiction)),
                "--audit-db",
                str(audit_db),
                "--audit-key",
                str(private_key_path(self.keys_dir, self.audit_key_name(jurisdiction))),
            ],
            base_url=f"http://{self.host}:{port}",
            log_path=self.logs_dir / f"connector-{jurisdiction.value.lower()}-{port}.log",
            env=env,
        )

    def database_args(self, jurisdiction: Jurisdiction) -> list[str]:
        """The node's database: its PostgreSQL URL where it has one, else its DuckDB file."""
        return ["--database", self.dsns.get(jurisdiction) or str(self.database(jurisdiction))]

    def gateway_service(
        self, *, port: int | None = None, name: str = "gateway", console: bool | None = None
    ) -> Service:
        """The gateway on its port, or another gateway replica on `port` (with a trail of its
        own); serving the query console if `console` (default: the federation's setting)."""
        replica = port is not None
        port = self.gateway_port if port is None else port
        audit_db = self.gateway_audit_db
        if replica:
            audit_db = audit_db.with_name(f"{audit_db.stem}-{port}.sqlite3")
        args = [
            "gateway",
            "serve",
            "--federation",
            str(self.federation_file),
            "--host",
            self.host,
            "--port",
            str(port),
            "--audit-db",
            str(audit_db),
        ]
        if self.console if console is None else console:
            args += ["--console", "--console-demo-credentials", str(self.directory)]
        if self.policies is not None:
            args += ["--policies", str(self.policies)]
        env = {**self.env, **self.gateway_env}
        if self.redis_url:
            env["TESSERA_GATEWAY_REDIS_URL"] = self.redis_url
            env["TESSERA_GATEWAY_REDIS_PREFIX"] = self.redis_prefix
        return Service(
            name=name,
            args=args,
            base_url=f"http://{self.host}:{port}",
            log_path=self.logs_dir / f"{name.replace(' ', '-')}.log",
            env=env,
        )

    async def start(self, timeout_s: float = 60.0) -> None:
        """Start the connectors and the gateway, with any service already added to the
        supervisor (such as the processes behind `extra_nodes`), and wait until all are
        ready."""
        for jurisdiction in self.jurisdictions:
            self.supervisor.add(self.connector_service(jurisdiction))
        self.supervisor.add(self.gateway_service())
        await self.supervisor.start_all(timeout_s)

    def service(self, name: str) -> Service:
        return next(s for s in self.supervisor.services if s.name == name)

    def stop(self) -> None:
        self.supervisor.stop_all()


def policies_with_rate_limits(target: Path, *, per_minute: int, per_day: int) -> Path:
    """A copy of the shipped policy directory with other rate limits, for load tests and
    benchmarks that ask far more than a researcher would. Everything else stays the law."""
    import shutil

    from policies.loader import DEFAULT_DIRECTORY

    shutil.copytree(DEFAULT_DIRECTORY, target, dirs_exist_ok=True)
    limits = {
        "[rate_limits.per_researcher_per_minute]": per_minute,
        "[rate_limits.per_approval_per_day]": per_day,
    }
    for path in [target / "eu.toml", *sorted((target / "jurisdictions").glob("*.toml"))]:
        lines = path.read_text().splitlines(keepends=True)
        table = ""
        for i, line in enumerate(lines):
            if line.startswith("["):
                table = line.strip()
            elif table in limits and line.startswith("value = "):
                lines[i] = f"value = {limits[table]}\n"
        path.write_text("".join(lines))
    return target
