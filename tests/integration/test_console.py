"""The query console in a real browser: headless Chromium with no network beyond loopback
opens the console of a real gateway process (run as the demo: credentials pre-filled),
asks the README's question of four real nodes and shows the answer's numbers. Leaves a
screenshot in `.tessera/artifacts/console.png`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tessera.local import LocalFederation
from tessera.processes import Service, free_port
from tests.integration.chromium import (
    ChromiumUnavailable,
    Page,
    chromium_binary,
    open_page,
    running_chromium,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / ".tessera" / "artifacts" / "console.png"


@pytest.fixture(scope="session")
def chromium() -> str:
    try:
        return chromium_binary()
    except ChromiumUnavailable as e:
        pytest.skip(f"cannot install Chromium here: {e}")


@pytest.fixture
def devtools(chromium: str, tmp_path: Path) -> Iterator[int]:
    with running_chromium(chromium, tmp_path / "chromium") as port:
        yield port


@contextlib.contextmanager
def running(service: Service) -> Iterator[Service]:
    service.start()
    try:
        asyncio.run(service.wait_ready())
        yield service
    finally:
        service.stop()


@pytest.fixture
def console_gateway(federation: LocalFederation) -> Iterator[Service]:
    """A second gateway of the federation, serving the console as `tessera demo` does."""
    service = federation.gateway_service(port=free_port(), name="console gateway", console=True)
    with running(service):
        yield service


@pytest.fixture
def hub_console_gateway(federation: LocalFederation) -> Iterator[Service]:
    """A gateway serving the console as a hub would: no credentials of anyone's in it."""
    service = federation.gateway_service(port=free_port(), name="hub console", console=False)
    service = dataclasses.replace(service, env={**service.env, "TESSERA_GATEWAY_CONSOLE": "true"})
    with running(service):
        yield service


def save(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def format_count(value: int) -> str:
    return f"{value:,}"


def problems(page: Page) -> list[str]:
    """Whatever the browser complained of: a script error, a refused resource, a
    Content-Security-Policy violation, a failed request."""
    found = [
        f"{e['entry']['source']}: {e['entry']['text']}"
        for e in page.seen("Log.entryAdded")
        if e["entry"]["level"] in ("error", "warning")
    ]
    found += [
        f"exception: {e['exceptionDetails'].get('text')}"
        for e in page.seen("Runtime.exceptionThrown")
    ]
    found += [
        f"console.{e['type']}: {e['args']}"
        for e in page.seen("Runtime.consoleAPICalled")
        if e["type"] in ("error", "warning")
    ]
    found += [
        f"failed: {e.get('errorText')} {e.get('blockedReason', '')}"
        for e in page.seen("Network.loadingFailed")
    ]
    return found


async def test_the_console_answers_offline_in_a_browser(
    devtools: int, console_gateway: Service
) -> None:
    base = console_gateway.base_url
    async with open_page(devtools) as page:
        for domain in ("Page", "Runtime", "Network", "Log"):
            await page.send(f"{domain}.enable")
        await page.send("Page.navigate", url=f"{base}/graphql")
        await page.wait_until("document.body && document.body.dataset.state === 'ready'")

        # The demo's credentials are pre-filled, and the first screen asks the README's
        # question.
        demo = federation_credentials(console_gateway)
        assert await page.evaluate("document.getElementById('bearer').value") == demo["bearer"]
        assert await page.evaluate("document.getElementById('permits').value") == "\n".join(
            demo["permits"]
        )
        question = await page.evaluate("document.getElementById('query').value")
        assert 'cohort(request: "DR-2026-0042", jurisdictions: [FR, DE, FI]' in question
        assert question in (ROOT / "README.md").read_text()

        await page.evaluate("document.getElementById('run').click()")
        await page.wait_until("document.body.dataset.state !== 'asking'")
        await asyncio.to_thread(save, ARTIFACT, await page.screenshot())
        print(f"console screenshot: {ARTIFACT}")

        raw = await page.evaluate("document.getElementById('response').textContent")
        summary = await page.evaluate("document.getElementById('summary').innerText")
        state = await page.evaluate("document.body.dataset.state")
        assert state == "answered", summary
        answer = json.loads(raw)["data"]["cohort"]
        check_the_numbers_are_shown(answer, summary)

        # Nothing but the gateway was asked, and the browser saw nothing wrong.
        urls = [e["request"]["url"] for e in page.seen("Network.requestWillBeSent")]
        assert {urlsplit(url).netloc for url in urls} == {urlsplit(base).netloc}, urls
        assert {urlsplit(url).path for url in urls} >= {
            "/graphql",
            "/console/console.js",
            "/console/console.css",
            "/console/demo-credentials.json",
        }
        assert problems(page) == []

        # And the browser really is offline: a CDN (where GraphiQL's scripts came from) is
        # out of reach.
        cdn = await page.send("Page.navigate", url="https://unpkg.com/graphiql/")
        assert cdn.get("errorText", "").startswith("net::ERR_"), cdn


def federation_credentials(service: Service) -> dict[str, Any]:
    """What the demo wrote, read from the files the gateway was pointed at."""
    directory = Path(service.args[service.args.index("--console-demo-credentials") + 1])
    return {
        "bearer": (directory / "researcher.jwt").read_text().strip(),
        "permits": [p.read_text().strip() for p in sorted(directory.glob("permits/*.jwt"))],
    }


def check_the_numbers_are_shown(answer: dict[str, Any], summary: str) -> None:
    pooled = answer["count"]
    assert pooled["value"] is not None, answer
    assert f"pooled count: {format_count(pooled['value'])}" in summary
    nodes = answer["byJurisdiction"]
    assert sorted(n["jurisdiction"] for n in nodes) == ["DE", "FI", "FR"]
    assert all(n["status"] == "OK" for n in nodes), nodes
    shown = [n for n in nodes if n["count"]["value"] is not None]
    assert shown, nodes
    for node in shown:
        line = next(s for s in summary.splitlines() if s.startswith(node["jurisdiction"]))
        assert format_count(node["count"]["value"]) in line, (line, node)
        assert " ms (interactive)" in line, line  # its latency, and its node's class
    cells = answer["breakdown"]["cells"]
    assert f"breakdown ({len(cells)} cells)" in summary
    released = [c for c in cells if c["count"]["value"] is not None]
    assert released, cells
    for cell in released:
        values = "\t".join(d["value"] for d in cell["dimensions"])
        assert f"{values}\t{format_count(cell['count']['value'])}" in summary, cell


async def test_a_researcher_brings_their_own_credentials(
    devtools: int, hub_console_gateway: Service, federation: LocalFederation
) -> None:
    async with open_page(devtools) as page:
        for domain in ("Page", "Runtime", "Network", "Log"):
            await page.send(f"{domain}.enable")
        await page.send("Page.navigate", url=f"{hub_console_gateway.base_url}/console")
        await page.wait_until("document.body && document.body.dataset.state === 'ready'")
        # Nothing pre-filled: the gateway hands out no tokens.
        assert await page.evaluate("document.getElementById('bearer').value") == ""
        assert await page.evaluate("document.getElementById('permits').value") == ""
        await page.evaluate("document.getElementById('run').click()")
        await page.wait_until("document.body.dataset.state !== 'asking'")
        assert await page.evaluate("document.body.dataset.state") == "refused"
        assert "UNAUTHENTICATED" in await page.evaluate(
            "document.getElementById('summary').innerText"
        )

        # The researcher loads their token file and their permit files.
        document = await page.send("DOM.getDocument")
        permit_files = sorted(federation.permits_dir.glob("*.jwt"))
        for selector, files in (
            ("#bearer-file", [federation.token_file]),
            ("#permit-files", permit_files),
        ):
            node = await page.send(
                "DOM.querySelector", nodeId=document["root"]["nodeId"], selector=selector
            )
            await page.send(
                "DOM.setFileInputFiles", nodeId=node["nodeId"], files=[str(f) for f in files]
            )
        await page.wait_until(
            "document.getElementById('permits').value.split('\\n').length === "
            f"{len(permit_files)} && document.getElementById('bearer').value.length > 0"
        )
        credentials = federation.researcher()
        assert await page.evaluate("document.getElementById('bearer').value") == (
            credentials.bearer
        )
        assert await page.evaluate("sessionStorage.getItem('tessera.console.bearer')") == (
            credentials.bearer
        )

        await page.evaluate("document.getElementById('run').click()")
        await page.wait_until("document.body.dataset.state !== 'asking'")
        summary = await page.evaluate("document.getElementById('summary').innerText")
        assert await page.evaluate("document.body.dataset.state") == "answered", summary
        raw = await page.evaluate("document.getElementById('response').textContent")
        check_the_numbers_are_shown(json.loads(raw)["data"]["cohort"], summary)
        hosts = {
            urlsplit(e["request"]["url"]).netloc for e in page.seen("Network.requestWillBeSent")
        }
        assert hosts == {urlsplit(hub_console_gateway.base_url).netloc}
        assert problems(page) == []
