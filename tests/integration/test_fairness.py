"""One researcher's burst must not starve the others: real connectors and a real gateway on
loopback, four nodes, four researchers of one application.

The finding this guards against: a batch of 4 operations x 16 `cohort` aliases, within every
documented limit, filled every node's in-flight and waiting slots at the gateway, so that
three researchers asking at the same moment got every node `UNAVAILABLE` (`NODE_BUSY`), twice
in a row; and the batch's last operation came back `data: null` while the audit trail
recorded its answered fields."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from bench.fairness import (
    Tally,
    audit_decisions,
    audit_mismatches,
    request_of,
    researchers,
    run_load,
)
from tessera.local import LocalFederation
from tests.integration.federation_kit import JURISDICTIONS, start_federation

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    fed = start_federation(tmp_path_factory.mktemp("fairness"), JURISDICTIONS, persons=5_000)
    yield fed
    fed.stop()


async def _post(session: aiohttp.ClientSession, url: str, payload: Any, headers: Any) -> Any:
    async with session.post(
        url, json=payload, headers=headers, timeout=aiohttp.ClientTimeout(total=60)
    ) as response:
        assert response.status == 200
        return await response.json()


def test_a_largest_batch_starves_no_one_and_is_audited_as_received(
    federation: LocalFederation,
) -> None:
    others, (heavy_name, heavy) = researchers(federation)
    url = federation.gateway_url
    batch = request_of(64, 0, heavy.application)  # 4 operations x 16 aliases
    assert isinstance(batch, list)
    assert len(batch) == 4

    async def scenario() -> tuple[Any, list[Tally]]:
        async with aiohttp.ClientSession() as session:
            burst = asyncio.create_task(_post(session, url, batch, heavy.credentials.headers()))
            await asyncio.sleep(0.3)
            rounds = []
            for round_ in range(2):  # twice in a row, as in the finding
                answers = await asyncio.gather(
                    *(
                        _post(
                            session,
                            url,
                            request_of(1, 20 + round_, a.application),
                            a.credentials.headers(),
                        )
                        for a in others.values()
                    )
                )
                tally = Tally()
                for answer in answers:
                    tally.add(answer, 0.0)
                rounds.append(tally)
            return await burst, rounds

    burst, rounds = asyncio.run(scenario())
    for tally in rounds:
        assert tally.fields == 3
        assert tally.all_ok == 3, tally.node_statuses
    # The burst asks more than one researcher may have in flight: refused whole, at once,
    # every field with its error and none answered.
    heavy_tally = Tally()
    heavy_tally.add(burst, 0.0)
    assert heavy_tally.fields == 64
    assert heavy_tally.answered == 0
    assert heavy_tally.errors == {"TOO_MANY_IN_FLIGHT": 64}
    # The trail holds what each received: a refusal per field refused, an answer per answer.
    trail = audit_decisions(federation.gateway_audit_db)
    assert trail[heavy_name] == {"REFUSED": 64}
    for name in others:
        assert trail[name] == {"ANSWERED": 2}


def test_three_researchers_keep_their_answers_while_a_fourth_sends_the_largest_request(
    federation: LocalFederation,
) -> None:
    """Bounded open-loop load: three researchers ask one question every 1/rate s each, while
    the fourth sends the largest request its share admits (32 questions) every second. The
    figures are counted, not timed."""
    others, heavy = researchers(federation)
    before = audit_decisions(federation.gateway_audit_db)
    result = asyncio.run(
        run_load(
            federation.gateway_url,
            others,
            heavy,
            rate=1.0,
            duration_s=5.0,
            heavy_fields=32,
            heavy_every_s=1.0,
        )
    )
    o = result.others
    assert o.fields == 15
    assert not o.transport
    assert o.all_ok / o.fields >= 0.95, (o.node_statuses, o.errors)
    # The heavy researcher was served too, not only refused.
    assert result.heavy.answered >= 32
    assert audit_mismatches(result, federation.gateway_audit_db, before) == []
