"""The query console as the gateway serves it: its files, their security headers, and the
demo's credentials only where the gateway runs as the demo (the browser test is
tests/integration/test_console.py)."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from graphql import build_schema, parse, validate

from gateway.app import create_app
from gateway.console import CONTENT_SECURITY_POLICY
from gateway.nodes import MockNodeClient
from gateway.settings import GatewaySettings, is_loopback
from schema.errors import SettingsError

ROOT = Path(__file__).resolve().parents[2]
BEARER = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJyZXNlYXJjaGVyIn0.c2lnbmF0dXJl"
PERMITS = {
    "de.jwt": "eyJhbGciOiJFZERTQSJ9.eyJpc3MiOiJkZSJ9.ZGUtc2lnbmF0dXJl",
    "fr.jwt": "eyJhbGciOiJFZERTQSJ9.eyJpc3MiOiJmciJ9.ZnItc2lnbmF0dXJl",
}


def demo_directory(tmp_path: Path) -> Path:
    directory = tmp_path / "demo"
    (directory / "permits").mkdir(parents=True)
    (directory / "researcher.jwt").write_text(BEARER + "\n")
    for name, token in PERMITS.items():
        (directory / "permits" / name).write_text(token + "\n")
    return directory


@pytest.fixture
async def console(settings: GatewaySettings, nodes: MockNodeClient) -> AsyncIterator[TestClient]:
    on = GatewaySettings.from_env({}, federation=settings.federation, console=True)
    async with TestClient(TestServer(create_app(on, node_client=nodes))) as client:
        yield client


async def test_no_console_unless_enabled(client: TestClient) -> None:
    page = await client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status == 405
    assert (await page.json())["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    for path in ("/console", "/console/console.js", "/console/demo-credentials.json"):
        response = await client.get(path)
        assert response.status == 404, path
        assert (await response.json())["errors"][0]["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("path", ["/graphql", "/console"])
async def test_the_page_comes_with_a_strict_policy(console: TestClient, path: str) -> None:
    page = await console.get(path, headers={"Accept": "text/html"})
    assert page.status == 200
    assert page.content_type == "text/html"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert "connect-src 'self';" in CONTENT_SECURITY_POLICY
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    text = await page.text()
    assert "Tessera query console" in text
    # Everything the page loads is its own: relative references, no other origin.
    references = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert set(references) == {"console/icon.svg", "console/console.css", "console/console.js"}
    assert "<script>" not in text  # no inline script: the policy would refuse it anyway


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("console.js", "text/javascript"),
        ("console.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ],
)
async def test_assets_are_served_from_the_package(
    console: TestClient, name: str, content_type: str
) -> None:
    response = await console.get(f"/console/{name}")
    assert response.status == 200
    assert response.content_type == content_type
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    body = await response.text()
    assert body == (ROOT / "gateway" / "assets" / name).read_text()
    if name != "icon.svg":  # an SVG names its XML namespace by URL, and loads nothing
        assert "http://" not in body
        assert "https://" not in body


async def test_unknown_assets_and_get_queries_are_not_served(console: TestClient) -> None:
    for path in ("/console/console.html", "/console/missing.js", "/console/../app.py"):
        response = await console.get(path)
        assert response.status == 404, path
    # A GET on the endpoint shows the page; it never runs a query.
    page = await console.get("/graphql", params={"query": "{ jurisdictions { code } }"})
    assert await page.read() == await (await console.get("/console")).read()
    answer = await console.post("/graphql", json={"query": "{ jurisdictions { code } }"})
    assert answer.status == 200
    assert "data" in await answer.json()


async def test_no_credentials_outside_the_demo(console: TestClient) -> None:
    response = await console.get("/console/demo-credentials.json")
    assert response.status == 200
    assert await response.json() == {"demo": False}


async def test_the_demo_hands_its_credentials_to_the_console(
    settings: GatewaySettings, nodes: MockNodeClient, tmp_path: Path
) -> None:
    demo = GatewaySettings.from_env(
        {},
        federation=settings.federation,
        console=True,
        console_demo_credentials=demo_directory(tmp_path),
    )
    async with TestClient(TestServer(create_app(demo, node_client=nodes))) as client:
        response = await client.get("/console/demo-credentials.json")
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        body = await response.json()
        assert body["demo"] is True
        assert body["bearer"] == BEARER
        assert body["permits"] == [PERMITS["de.jwt"], PERMITS["fr.jwt"]]
        # The page itself never carries a token: the script asks for them.
        assert BEARER not in await (await client.get("/console")).text()
        # A page of another site whose name resolves to 127.0.0.1 (DNS rebinding) gets none.
        rebound = await client.get(
            "/console/demo-credentials.json", headers={"Host": "attacker.example:8400"}
        )
        assert await rebound.json() == {"demo": False}
        (tmp_path / "demo" / "researcher.jwt").unlink()
        missing = await client.get("/console/demo-credentials.json")
        assert missing.status == 503
        assert (await missing.json())["errors"][0]["extensions"]["code"] == (
            "TEMPORARILY_UNAVAILABLE"
        )


def test_demo_credentials_only_with_the_console_and_on_loopback(tmp_path: Path) -> None:
    env = {
        "TESSERA_GATEWAY_FEDERATION": "f.toml",
        "TESSERA_GATEWAY_CONSOLE_DEMO_CREDENTIALS": str(tmp_path),
    }
    with pytest.raises(SettingsError, match="needs the console on"):
        GatewaySettings.from_env(env)
    with pytest.raises(SettingsError, match="loopback only"):
        GatewaySettings.from_env({**env, "TESSERA_GATEWAY_CONSOLE": "true"}, host="0.0.0.0")  # noqa: S104
    for host in ("127.0.0.1", "::1", "localhost"):
        settings = GatewaySettings.from_env({**env, "TESSERA_GATEWAY_CONSOLE": "1"}, host=host)
        assert settings.console_demo_credentials == tmp_path


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("[::1]", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),  # noqa: S104
        ("10.0.0.1", False),
        ("::", False),
        ("gateway.example.eu", False),
        ("127.0.0.1.nip.io", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def default_question() -> str:
    page = (ROOT / "gateway" / "assets" / "console.html").read_text()
    found = re.search(r'<textarea id="query"[^>]*>(.*?)</textarea>', page, re.DOTALL)
    assert found is not None
    return html.unescape(found.group(1))


def test_the_first_screen_asks_the_readmes_question() -> None:
    question = default_question()
    blocks = re.findall(r"```graphql\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert question in blocks, "the console's example question is not the README's"
    schema = build_schema((ROOT / "schema" / "schema.graphql").read_text())
    assert validate(schema, parse(question)) == []
