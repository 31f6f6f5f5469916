"""A federation in one process: the real gateway and connector applications talking signed
HTTP over loopback, each with its own tracer provider (all exporting to one in-memory
exporter) and its own SQLite audit trail; the connectors' databases are `FakeBackend`s whose
counts the test chooses.

Imported as `tests.observability_kit` (`tests/test_kits.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from connectors.app import create_app as create_connector
from connectors.backends.base import Backend
from connectors.settings import ConnectorSettings
from gateway.app import create_app as create_gateway
from gateway.settings import GatewaySettings
from schema.approval import Role
from schema.codes import Jurisdiction
from tessera.keys import generate_keypair, private_key_path, public_key_path
from tessera.tokens import demo_approval
from tests.token_kit import mint_jwt

ISSUER = "https://hdab.test.tessera.eu"
GATEWAY_ID = "tessera-gateway"


@dataclass
class InProcessFederation:
    directory: Path
    jurisdictions: Sequence[Jurisdiction]
    gateway: TestClient
    spans: InMemorySpanExporter
    node_servers: dict[Jurisdiction, TestServer] = field(default_factory=dict)

    @property
    def keys(self) -> Path:
        return self.directory / "keys"

    def gateway_audit_db(self) -> Path:
        return self.directory / "audit" / "gateway.sqlite3"

    def node_audit_db(self, jurisdiction: Jurisdiction) -> Path:
        return self.directory / "audit" / f"node-{jurisdiction.value.lower()}.sqlite3"

    def token(self, *roles: Role, subject: str = "researcher@test.tessera.eu") -> str:
        compliance_only = roles == (Role.COMPLIANCE,)
        key = load_pem_private_key(private_key_path(self.keys, "hdab").read_bytes(), None)
        return mint_jwt(
            key,
            issuer=ISSUER,
            audience=GATEWAY_ID,
            subject=subject,
            roles=[role.value for role in roles or (Role.RESEARCHER,)],
            # A shared issuer's permit for every node, naming each node's (default) dataset.
            approval=None
            if compliance_only
            else demo_approval(
                self.jurisdictions,
                datasets=[f"tessera-node-{j.value.lower()}" for j in self.jurisdictions],
            ),
        )

    async def ask(self, query: str, token: str, **variables: Any) -> dict[str, Any]:
        response = await self.gateway.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
        body: dict[str, Any] = await response.json()
        return body


def _provider(spans: InMemorySpanExporter, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource({SERVICE_NAME: service}))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return provider


@asynccontextmanager
async def in_process_federation(
    directory: Path, backends: Mapping[Jurisdiction, Backend], *, policies: Path | None = None
) -> AsyncIterator[InProcessFederation]:
    keys = directory / "keys"
    for name in ("gateway", "hdab", *(f"audit-{j.value.lower()}" for j in backends)):
        generate_keypair(keys, name)
    spans = InMemorySpanExporter()
    servers: dict[Jurisdiction, TestServer] = {}
    try:
        for jurisdiction, backend in backends.items():
            code = jurisdiction.value.lower()
            settings = ConnectorSettings(
                jurisdiction=jurisdiction,
                database=directory / f"{code}.duckdb",  # unused: the backend is given
                port=0,
                gateway_keys={"gateway-1": public_key_path(keys, "gateway")},
                audit_key=private_key_path(keys, f"audit-{code}"),
                audit_db=str(directory / "audit" / f"node-{code}.sqlite3"),
                policies=policies,
                # Each node checks approvals against the HDAB that issues the test tokens.
                hdab_issuer=ISSUER,
                hdab_public_key=public_key_path(keys, "hdab"),
            )
            app = create_connector(
                settings,
                backend=backend,
                tracer_provider=_provider(spans, f"tessera-connector-{code}"),
            )
            servers[jurisdiction] = TestServer(app)
            await servers[jurisdiction].start_server()
        federation_file = directory / "federation.toml"
        federation_file.write_text(
            f'[gateway]\nid = "{GATEWAY_ID}"\nsigning_key = "keys/gateway.key.pem"\n'
            'signing_kid = "gateway-1"\n\n'
            f'[[issuers]]\niss = "{ISSUER}"\npublic_key = "keys/hdab.pub.pem"\n'
            'algorithms = ["EdDSA"]\n\n'
            + "".join(
                f'[[nodes]]\njurisdiction = "{j.value}"\nnode_id = "tessera-node-'
                f'{j.value.lower()}"\nurl = "{str(s.make_url("")).rstrip("/")}"\n\n'
                for j, s in servers.items()
            )
        )
        settings = GatewaySettings.from_env(
            {},
            federation=federation_file,
            deadline_s=10.0,
            audit_db=str(directory / "audit" / "gateway.sqlite3"),
            policies=policies,
        )
        gateway = TestClient(
            TestServer(
                create_gateway(settings, tracer_provider=_provider(spans, "tessera-gateway"))
            )
        )
        await gateway.start_server()
        try:
            yield InProcessFederation(
                directory=directory,
                jurisdictions=list(backends),
                gateway=gateway,
                spans=spans,
                node_servers=servers,
            )
        finally:
            await gateway.close()
    finally:
        for server in servers.values():
            await server.close()
