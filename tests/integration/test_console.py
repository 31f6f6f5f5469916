"""The query console in a real browser: headless Chromium with no network beyond loopback
opens the console of a real gateway process (run as the demo: credentials pre-filled),
asks the README's question of four real nodes and shows the answer's numbers. Leaves a
screenshot in `.tessera/artifacts/console.png`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from chromium import ChromiumUnavailable, Page, chromium_binary, chromium_page

from tessera.local import LocalFederation
from tessera.processes import Service, free_port

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
def console_gateway(federation: LocalFederation) -> Iterator[Service]:
    """A second gateway of the federation, serving the console as `tessera demo` does."""
    import asyncio

    service = federation.gateway_service(port=free_port(), name="console gateway", console=True)
    service.start()
    try:
        asyncio.run(service.wait_ready())
        yield service
    finally:
        service.stop()


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
    chromium: str, console_gateway: Service, tmp_path: Path
) -> None:
    base = console_gateway.base_url
    async with chromium_page(chromium, tmp_path / "chromium") as page:
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
        await page.wait_until("['answered', 'refused', 'failed'].includes(document.body.dataset.state)")
        shot = await page.screenshot(ARTIFACT)
        print(f"console screenshot: {shot}")

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
    cells = answer["breakdown"]["cells"]
    assert f"breakdown ({len(cells)} cells)" in summary
    released = [c for c in cells if c["count"]["value"] is not None]
    assert released, cells
    for cell in released:
        values = "\t".join(d["value"] for d in cell["dimensions"])
        assert f"{values}\t{format_count(cell['count']['value'])}" in summary, cell
