"""One request token per question, through real processes: a gateway and two connectors, the
FR connector behind a wire tap on loopback that records what the gateway sends it.

- Questions still work; the request FR received carries the question's token (both nodes in
  `aud`, each with its own salted body hash) and FR's own salt.
- The captured request replayed to DK (with its body, salt and permit) is refused
  (WRONG_NODE: it matches FR's entry, not DK's), and so is the same request sent to FR again
  (REPLAYED_REQUEST); the next question is answered by both.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import jwt
import pytest
from aiohttp import web

from schema.codes import Jurisdiction
from schema.wire import (
    APPROVAL_HEADER,
    BODY_SALT_HEADER,
    QUERY_PATH,
    QUESTION_TOKEN_TYP,
)
from tessera.local import LocalFederation, policies_with_rate_limits
from tessera.processes import free_port
from tests.integration.federation_kit import http_post, post

pytestmark = pytest.mark.integration

FR, DK = Jurisdiction.FR, Jurisdiction.DK
QUERY = """{ cohort(request: "DR-2026-0042", referenceDate: "2026-01-01",
  criteria: { conditions: [{ vocabulary: ICD10, code: "I10" }] }) {
    queryId count { value } byJurisdiction { jurisdiction status error } } }"""


@dataclass(frozen=True, slots=True)
class Captured:
    headers: dict[str, str]
    body: bytes


class WireTap:
    """Forwards every request to `target` and records the query requests it passes on."""

    def __init__(self, port: int, target: str) -> None:
        self.port, self.target = port, target
        self.captured: list[Captured] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WireTap:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in {"host"}}
        if request.path == QUERY_PATH:
            self.captured.append(Captured(headers, body))
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, self.target + request.path_qs, data=body, headers=headers
            ) as answer,
        ):
            return web.Response(
                status=answer.status,
                body=await answer.read(),
                content_type=answer.content_type,
            )


@pytest.fixture(scope="module")
def tapped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalFederation, WireTap]]:
    directory: Path = tmp_path_factory.mktemp("question-tokens")
    fr_port, tap_port = free_port(), free_port()
    with WireTap(tap_port, f"http://127.0.0.1:{fr_port}") as tap:
        federation = LocalFederation(
            directory=directory,
            policies=policies_with_rate_limits(
                directory / "policies", per_minute=100_000, per_day=1_000_000
            ),
            jurisdictions=(FR, DK),
            persons=2_000,
            seed=7,
            gateway_port=free_port(),
            node_ports=[fr_port, free_port()],
            console=False,
            # The gateway reaches FR's connector through the tap.
            extra_nodes={FR: f"http://127.0.0.1:{tap_port}"},
        )
        federation.prepare()
        try:
            asyncio.run(federation.start())
            yield federation, tap
        finally:
            federation.stop()


def test_questions_carry_one_token_and_a_captured_request_is_refused_elsewhere(
    tapped: tuple[LocalFederation, WireTap],
) -> None:
    federation, tap = tapped
    status, body = post(federation.gateway_url, {"query": QUERY}, federation.researcher())
    assert status == 200, body
    cohort = body["data"]["cohort"]
    assert {n["jurisdiction"]: n["status"] for n in cohort["byJurisdiction"]} == {
        "FR": "OK",
        "DK": "OK",
    }, cohort
    assert cohort["count"]["value"] is not None

    (captured,) = tap.captured
    token = captured.headers["Authorization"].removeprefix("Bearer ")
    assert jwt.get_unverified_header(token)["typ"] == QUESTION_TOKEN_TYP
    claims = jwt.decode(token, options={"verify_signature": False})
    ids = [federation.node_id(FR), federation.node_id(DK)]
    assert sorted(claims["aud"]) == sorted(ids)
    assert sorted(claims["bsm"]) == sorted(ids)
    assert captured.headers[BODY_SALT_HEADER]

    replayed = [
        (name, captured.headers[name])
        for name in ("Authorization", BODY_SALT_HEADER, APPROVAL_HEADER)
    ]
    dk = federation.service("connector DK").base_url + QUERY_PATH
    status, _, refused = http_post(dk, captured.body, replayed)
    assert (status, refused.get("code")) == (400, "WRONG_NODE"), refused
    fr = federation.service("connector FR").base_url + QUERY_PATH
    status, _, refused = http_post(fr, captured.body, replayed)
    assert (status, refused.get("code")) == (401, "REPLAYED_REQUEST"), refused

    # The refusals spent nothing the gateway needs: the next question is answered by both.
    status, body = post(federation.gateway_url, {"query": QUERY}, federation.researcher())
    assert status == 200, body
    assert {n["status"] for n in body["data"]["cohort"]["byJurisdiction"]} == {"OK"}, body
    assert len(tap.captured) == 2
