"""Real processes on loopback: connectors on synthetic OMOP databases and the gateway."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schema.codes import Jurisdiction
from tessera.local import LocalFederation, policies_with_rate_limits
from tessera.processes import free_port

PERSONS = 20_000
JURISDICTIONS = (Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK)


def start_federation(
    directory: Path, jurisdictions: tuple[Jurisdiction, ...], **options: Any
) -> LocalFederation:
    # The tests ask far more questions per minute than a researcher may; the rate limits
    # themselves are tested on their own (tests/gateway, test_shared_state).
    options.setdefault(
        "policies",
        policies_with_rate_limits(directory / "policies", per_minute=100_000, per_day=1_000_000),
    )
    federation = LocalFederation(
        directory=directory,
        jurisdictions=jurisdictions,
        persons=PERSONS,
        seed=7,
        gateway_port=free_port(),
        node_ports=[free_port() for _ in jurisdictions],
        graphiql=False,
        **options,
    )
    federation.prepare()
    try:
        asyncio.run(federation.start())
    except BaseException:
        federation.stop()
        raise
    return federation


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    fed = start_federation(tmp_path_factory.mktemp("federation"), JURISDICTIONS)
    yield fed
    fed.stop()


@pytest.fixture(scope="session")
def token(federation: LocalFederation) -> str:
    return federation.token_file.read_text().strip()


def post(url: str, payload: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any]]:
    """A plain HTTP client (stdlib), independent of the code under test."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 - loopback URL built by the test
        url, data=json.dumps(payload).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture
def graphql(federation: LocalFederation, token: str) -> Any:
    def run(
        query: str, variables: dict[str, Any] | None = None, *, auth: str | None = token
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        _, body = post(federation.gateway_url, payload, auth)
        return body

    return run
