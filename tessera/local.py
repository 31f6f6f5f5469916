"""A whole federation on loopback: keys, synthetic databases, configuration, processes.

`tessera demo` and the integration tests both build their federation here, so the tests
exercise exactly what a newcomer runs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from schema.approval import Approval, Role
from schema.codes import Jurisdiction
from tessera.keys import ensure_keypair, private_key_path, public_key_path
from tessera.processes import Service, Supervisor
from tessera.tokens import DEMO_AUDIENCE, DEMO_ISSUER, demo_approval, mint_token

GATEWAY_KID = "gateway-1"


@dataclass
class LocalFederation:
    directory: Path
    jurisdictions: Sequence[Jurisdiction]
    persons: int
    seed: int = 42
    host: str = "127.0.0.1"
    gateway_port: int = 8400
    node_ports: Sequence[int] = ()
    graphiql: bool = True
    # A hub's own policy layer per jurisdiction (the node's final veto), if any.
    node_policies: Mapping[Jurisdiction, Path] = field(default_factory=dict)
    # Nodes whose OMOP CDM lives in PostgreSQL (a `postgresql://` URL) instead of DuckDB.
    dsns: Mapping[Jurisdiction, str] = field(default_factory=dict)
    # Extra environment of every service process (e.g. `OTEL_*` to export traces).
    env: Mapping[str, str] = field(default_factory=dict)
    supervisor: Supervisor = field(default_factory=Supervisor)
    # Nodes served by something other than a connector of this federation (by URL), e.g. the
    # misbehaving nodes of fault-injection tests: in the federation file and the approval.
    extra_nodes: Mapping[Jurisdiction, str] = field(default_factory=dict)
    # TESSERA_GATEWAY_* settings for the gateway process.
    gateway_env: Mapping[str, str] = field(default_factory=dict)

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
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}/graphql"

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

    def history(self, jurisdiction: Jurisdiction) -> Path:
        """The node's differencing-guard history (kept across restarts of the federation)."""
        return self.state_dir / f"{jurisdiction.value.lower()}.populations.sqlite3"

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

    def audit_trails(self) -> dict[str, tuple[Path, Path]]:
        """Every service's audit trail and the public key its chain heads are signed with, by
        service name (as in the supervisor): what `tessera audit verify` is given."""
        trails = {"gateway": (self.gateway_audit_db, public_key_path(self.keys_dir, "gateway"))}
        for j in self.jurisdictions:
            key = public_key_path(self.keys_dir, self.audit_key_name(j))
            trails[f"connector {j.value}"] = (self.audit_db(j), key)
        return trails

    # -- set-up ---------------------------------------------------------------------------
    def prepare(self, *, progress: bool = False) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ensure_keypair(self.keys_dir, "gateway")
        ensure_keypair(self.keys_dir, "hdab")
        for jurisdiction in self.jurisdictions:
            ensure_keypair(self.keys_dir, self.audit_key_name(jurisdiction))
            self.synthesise(jurisdiction, progress=progress)
        self.write_federation()
        self.token_file.write_text(self.mint(demo_approval(self.members)) + "\n")
        compliance = self.mint(None, subject="compliance@demo.tessera.eu", roles=(Role.COMPLIANCE,))
        self.compliance_token_file.write_text(compliance + "\n")

    def synthesise(self, jurisdiction: Jurisdiction, *, progress: bool) -> None:
        """Generate a node's database unless one with the same parameters exists."""
        from connectors.synth import generate

        path = self.database(jurisdiction)
        manifest = path.with_suffix(".json")
        wanted = {"jurisdiction": jurisdiction.value, "persons": self.persons, "seed": self.seed}
        if path.exists() and manifest.exists() and json.loads(manifest.read_text()) == wanted:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if progress:
            print(
                f"synthesising {self.persons:,} persons for {jurisdiction.value} …", file=sys.stderr
            )
        generate(
            path, jurisdiction=jurisdiction, persons=self.persons, seed=self.seed, progress=progress
        )
        manifest.write_text(json.dumps(wanted))

    def write_federation(self) -> None:
        nodes = "\n".join(
            f'[[nodes]]\njurisdiction = "{j.value}"\nnode_id = "{self.node_id(j)}"\n'
            f'url = "{self.node_url(j)}"\n'
            for j in self.members
        )
        self.federation_file.write_text(
            "# Written by `tessera demo`: the federation this gateway fans out to.\n"
            "[gateway]\n"
            f'id = "{DEMO_AUDIENCE}"\n'
            f'signing_key = "keys/{private_key_path(Path(), "gateway")}"\n'
            f'signing_kid = "{GATEWAY_KID}"\n\n'
            "[[issuers]]\n"
            f'iss = "{DEMO_ISSUER}"\n'
            f'public_key = "keys/{public_key_path(Path(), "hdab")}"\n'
            'algorithms = ["EdDSA"]\n\n' + nodes
        )

    @staticmethod
    def node_id(jurisdiction: Jurisdiction) -> str:
        return f"tessera-node-{jurisdiction.value.lower()}"

    def mint(
        self,
        approval: Approval | None,
        *,
        subject: str = "researcher@demo.tessera.eu",
        **kwargs: object,
    ) -> str:
        return mint_token(
            private_key_path(self.keys_dir, "hdab"),
            issuer=DEMO_ISSUER,
            audience=DEMO_AUDIENCE,
            subject=subject,
            approval=approval,
            **kwargs,  # type: ignore[arg-type]
        )

    # -- processes ------------------------------------------------------------------------
    def connector_service(self, jurisdiction: Jurisdiction) -> Service:
        port = self.node_ports[list(self.jurisdictions).index(jurisdiction)]
        gateway_key = public_key_path(self.keys_dir, "gateway")
        node_policy = self.node_policies.get(jurisdiction)
        extra = ["--node-policy", str(node_policy)] if node_policy else []
        return Service(
            name=f"connector {jurisdiction.value}",
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
                "--gateway-key",
                f"{GATEWAY_KID}={gateway_key}",
                *extra,
                "--history",
                str(self.history(jurisdiction)),
                "--audit-db",
                str(self.audit_db(jurisdiction)),
                "--audit-key",
                str(private_key_path(self.keys_dir, self.audit_key_name(jurisdiction))),
            ],
            base_url=self.node_url(jurisdiction),
            log_path=self.logs_dir / f"connector-{jurisdiction.value.lower()}.log",
            env=self.env,
        )

    def database_args(self, jurisdiction: Jurisdiction) -> list[str]:
        dsn = self.dsns.get(jurisdiction)
        if dsn is not None:
            return ["--dsn", dsn]
        return ["--database", str(self.database(jurisdiction))]

    def gateway_service(self) -> Service:
        args = [
            "gateway",
            "serve",
            "--federation",
            str(self.federation_file),
            "--host",
            self.host,
            "--port",
            str(self.gateway_port),
            "--audit-db",
            str(self.gateway_audit_db),
        ]
        if self.graphiql:
            args.append("--graphiql")
        return Service(
            name="gateway",
            args=args,
            base_url=f"http://{self.host}:{self.gateway_port}",
            log_path=self.logs_dir / "gateway.log",
            env={**self.env, **self.gateway_env},
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
