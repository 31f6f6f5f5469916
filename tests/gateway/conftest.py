"""Gateway test fixtures: fresh keys, a federation file, a researcher token, fake nodes and
an aiohttp test client around the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.app import create_app
from gateway.nodes import MockNodeClient
from gateway.settings import GatewaySettings
from tests.gateway.gateway_kit import Keys, Post, counts_handler, mint, write_federation


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(gateway=Ed25519PrivateKey.generate(), hdab=Ed25519PrivateKey.generate())


@pytest.fixture
def federation_file(tmp_path: Path, keys: Keys) -> Path:
    return write_federation(tmp_path, keys)


@pytest.fixture
def settings(federation_file: Path) -> GatewaySettings:
    return GatewaySettings.from_env({}, federation=federation_file, deadline_s=2.0)


@pytest.fixture
def token(keys: Keys) -> str:
    return mint(keys)


@pytest.fixture
def nodes() -> MockNodeClient:
    return MockNodeClient(counts_handler())


@pytest.fixture
async def client(settings: GatewaySettings, nodes: MockNodeClient) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(settings, node_client=nodes))) as test_client:
        yield test_client


@pytest.fixture
def graphql(client: TestClient, token: str) -> Post:
    """POST a GraphQL query to the test app; `auth=None` sends no token."""

    async def post(
        query: str, variables: dict[str, Any] | None = None, *, auth: str | None = token
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {auth}"} if auth else {}
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        response = await client.post("/graphql", json=payload, headers=headers)
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    return post
