"""Real processes on loopback: connectors on synthetic OMOP databases and the gateway."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tessera.credentials import Credentials
from tessera.local import LocalFederation
from tests.integration.federation_kit import JURISDICTIONS, Auth, post, start_federation


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    fed = start_federation(tmp_path_factory.mktemp("federation"), JURISDICTIONS)
    yield fed
    fed.stop()


@pytest.fixture(scope="session")
def token(federation: LocalFederation) -> Credentials:
    """The researcher's credentials as the federation wrote them: an identity token and one
    permit per member, each from its own HDAB."""
    return federation.researcher()


@pytest.fixture
def graphql(federation: LocalFederation, token: Credentials) -> Any:
    def run(
        query: str, variables: dict[str, Any] | None = None, *, auth: Auth = token
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        _, body = post(federation.gateway_url, payload, auth)
        return body

    return run
