"""A node's part in a pooled round, on the fake backend: the national tables released as
always, the pooled ones only as masked shares that add up with the other participants' to the
pooled counts; shares drawn once per participant set and charged to the ledger; every round
the node does not take part in refused for its form, before anything is computed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from numpy.typing import NDArray
from test_service import BY_SEX_ROWS, E11, ask, service, tables_statements, verifier

from connectors.answers import MemoryAnswers
from connectors.backends.fake import FakeBackend
from connectors.canonical import question_digest
from connectors.errors import BadRequest, PoolRefused
from connectors.masking import masked, pair_secret
from connectors.noise import ShiftedNoise
from connectors.pool_peers import PoolKeys, encode_public
from tests.connectors.connector_kit import SHIPPED, request_body
from trust.request_token import RequestVerifier

__all__ = ["verifier"]  # the fixture, shared with test_service
from oversight.audit.store import MemoryAuditStore
from policies.domain import table_domain
from policies.model import NodeLayer
from policies.policy_set import EffectivePolicy
from schema.audit.entry import Decision
from schema.codes import Dimension, Jurisdiction, MeasureKind, NodeStatus
from schema.errors import ErrorCode
from schema.measures import MEASURES
from schema.pooling import PoolingRequest, encode_nonce, pooled_sum
from schema.query import Breakdown, Criteria
from schema.wire import NodeRequest, NodeResponse

Sign = Callable[..., str]
SEX = Dimension.SEX
FR, DE, FI, DK = (f"tessera-node-{c}" for c in ("fr", "de", "fi", "dk"))
PRIVATE = {
    n: X25519PrivateKey.from_private_bytes(hashlib.sha256(n.encode()).digest())
    for n in (FR, DE, FI, DK)
}


@pytest.fixture
def pool_keys(tmp_path: Path) -> PoolKeys:
    registry = tmp_path / "pool-peers.json"
    registry.write_text(
        json.dumps({n: encode_public(PRIVATE[n].public_key()) for n in (FR, DE, FI, DK)})
    )
    return PoolKeys.load(FR, PRIVATE[FR], registry)


class SpyNoise(ShiftedNoise):
    """No noise at all, and the sd of every draw recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.sds: list[float] = []

    def draw(self, counts: Sequence[int], sd: float) -> list[int]:
        self.sds.append(sd)
        return super().draw(counts, sd)


NONCES = iter(encode_nonce(hashlib.sha256(str(i).encode()).digest()) for i in range(10_000))


def pooled_body(
    participants: Sequence[str] = (DE, FI, FR),
    *,
    tables: Sequence[Breakdown] = ((), (SEX,)),
    national: Sequence[Breakdown] = ((),),
    sigma: float = 5.0,
    nonce: str | None = None,
    round_number: int = 1,
) -> bytes:
    body = request_body(Criteria(conditions=[E11]), [(), (SEX,)])
    request = NodeRequest.model_validate_json(body)
    pooling = PoolingRequest(
        nonce=nonce or next(NONCES),
        round=round_number,
        participants=sorted(participants),
        sigma=sigma,
        tables=list(tables),
        national=list(national),
    )
    return request.model_copy(update={"pooling": pooling}).model_dump_json().encode()


def others(body: bytes, values: dict[str, int], by: Breakdown) -> list[NDArray[np.uint64]]:
    """What the other participants send for table `by` when each of their cells holds
    `values[node]`."""
    request = NodeRequest.model_validate_json(body)
    pooling = request.pooling
    assert pooling is not None
    cells = len(table_domain(by, request.query))
    vectors = []
    for node in pooling.participants:
        if node == FR:
            continue
        secrets = {
            peer: pair_secret(PRIVATE[node], PRIVATE[peer].public_key())
            for peer in pooling.participants
            if peer != node
        }
        vectors.append(
            masked(
                np.full(cells, values[node], dtype=np.int64),
                own=node,
                secrets=secrets,
                nonce=pooling.nonce_bytes(),
                participants=pooling.participants,
                digest=question_digest(request.query, by),
                round_number=pooling.round,
                sigma=pooling.sigma,
            )
        )
    return vectors


def pooled_counts(response: NodeResponse, body: bytes, by: Breakdown) -> dict[Any, int]:
    """The pooled table once FR's shares are added to DE's (100 per cell) and FI's (1000)."""
    assert response.pooled is not None
    (table,) = [t for t in response.pooled.tables if t.by == by]
    request = NodeRequest.model_validate_json(body)
    total = pooled_sum([table.values(), *others(body, {DE: 100, FI: 1000, DK: 10_000}, by)])
    return dict(zip(table_domain(by, request.query), total.tolist(), strict=True))


def pooling_service(verifier: RequestVerifier, keys: PoolKeys | None, **kw: Any) -> Any:
    svc = service(kw.pop("backend"), verifier, **kw)
    svc.pool_keys = keys
    return svc


async def test_pooled_tables_leave_only_as_masked_shares_that_add_up_to_the_pooled_counts(
    verifier: RequestVerifier, sign: Sign, pool_keys: PoolKeys
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    noise = SpyNoise()
    svc = pooling_service(verifier, pool_keys, backend=backend, noise=noise)
    body = pooled_body()
    response = await ask(svc, sign, body)
    assert response.status is NodeStatus.OK
    # The total is released nationally (LOW or not, as ever); the table by sex is not.
    assert [t.by for t in response.tables] == [()]
    assert response.pooled is not None
    assert response.pooled.participants == [DE, FI, FR]
    assert [t.by for t in response.pooled.tables] == [(), (SEX,)]
    # Each share alone is no count ...
    by_sex = response.pooled.tables[1].values()
    assert len(by_sex) == 3
    assert 112 not in by_sex.view(np.int64).tolist()
    # ... but the round's sum is: FR's counts (no noise here) plus DE's and FI's.
    assert pooled_counts(response, body, ()) == {(): 120 + 1100}
    assert pooled_counts(response, body, (SEX,)) == {
        ("FEMALE",): 112 + 1100,
        ("MALE",): 8 + 1100,
        ("UNKNOWN",): 0 + 1100,
    }
    # National noise at FR's sd; each share's noise at sd 5/√3, so that three add up to 5.
    assert noise.sds == pytest.approx([5 / 3**0.5, 5 / 3**0.5, 5.0])
    # The national total and two pooled tables, each 1/(2·5²).
    assert response.privacy is not None
    assert response.privacy.question_rho == pytest.approx(0.06)


async def test_the_same_round_again_returns_the_stored_shares_free(
    verifier: RequestVerifier, sign: Sign, pool_keys: PoolKeys
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    noise = ShiftedNoise(lambda i: 3 * i - 2)
    svc = pooling_service(verifier, pool_keys, backend=backend, noise=noise)
    first_body, again_body = pooled_body(), pooled_body()  # new nonces, same participants
    first = await ask(svc, sign, first_body)
    draws = noise.draws
    again = await ask(svc, sign, again_body)
    assert pooled_counts(first, first_body, (SEX,)) == pooled_counts(again, again_body, (SEX,))
    assert noise.draws == draws
    assert len(tables_statements(backend)) == 1
    assert again.privacy is not None
    assert again.privacy.question_rho == 0
    # The masked vectors themselves differ: another nonce, other masks.
    assert first.pooled is not None
    assert again.pooled is not None
    assert first.pooled.tables[1].shares != again.pooled.tables[1].shares


async def test_another_participant_set_draws_new_shares_and_pays_for_them(
    verifier: RequestVerifier, sign: Sign, pool_keys: PoolKeys
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    noise = SpyNoise()
    svc = pooling_service(verifier, pool_keys, backend=backend, noise=noise)
    await ask(svc, sign, pooled_body((DE, FI, FR, DK)))
    response = await ask(svc, sign, pooled_body((DE, FI, FR)))
    # The national total is stored; the pooled tables are drawn anew for the new set.
    assert noise.sds == pytest.approx([2.5, 2.5, 5.0, 5 / 3**0.5, 5 / 3**0.5])
    assert response.privacy is not None
    assert response.privacy.question_rho == pytest.approx(0.04)


async def test_a_table_asked_both_ways_is_released_and_pooled(
    verifier: RequestVerifier, sign: Sign, pool_keys: PoolKeys
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    svc = pooling_service(verifier, pool_keys, backend=backend)
    body = pooled_body(tables=[(SEX,)], national=[(), (SEX,)])
    response = await ask(svc, sign, body)
    assert [t.by for t in response.tables] == [(), (SEX,)]
    assert response.pooled is not None
    assert [t.by for t in response.pooled.tables] == [(SEX,)]
    assert response.privacy is not None
    assert response.privacy.question_rho == pytest.approx(0.06)


async def test_a_participant_asked_no_total_of_its_own_releases_only_shares_charged_once(
    verifier: RequestVerifier, sign: Sign, pool_keys: PoolKeys
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    noise = ShiftedNoise(lambda i: 3 * i - 2)
    svc = pooling_service(verifier, pool_keys, backend=backend, noise=noise)
    body = pooled_body(national=[])
    response = await ask(svc, sign, body)
    assert response.status is NodeStatus.OK
    assert response.tables == []  # no national number at all, the total included
    assert response.pooled is not None
    assert [t.by for t in response.pooled.tables] == [(), (SEX,)]
    # The pooled total and the pooled table by sex, each 1/(2·5²): the total once.
    assert response.privacy is not None
    assert response.privacy.question_rho == pytest.approx(0.04)
    # Asked with its own total next time (same participants): only that is new, and charged;
    # the pooled numbers are the stored ones, whatever else the question releases.
    with_total = pooled_body(national=[()])
    again = await ask(svc, sign, with_total)
    assert [t.by for t in again.tables] == [()]
    assert again.privacy is not None
    assert again.privacy.question_rho == pytest.approx(0.02)
    for by in [(), (SEX,)]:
        assert pooled_counts(again, with_total, by) == pooled_counts(response, body, by)


def fr_policy_with(**pooling: Any) -> EffectivePolicy:
    """FR's policy with a node layer stating `disclosure.secure_pooling`."""
    layer = NodeLayer.model_validate(
        {
            "name": "test node",
            "node": {"id": FR, "jurisdiction": "FR"},
            "disclosure": {
                "secure_pooling": {"value": pooling, "source": "test", "verified": False}
            },
        }
    )
    return SHIPPED.effective(Jurisdiction.FR, layer)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (lambda: pooled_body((DE, FI, DK)), "do not include this node"),
        (lambda: pooled_body((DE, FR, "tessera-node-xx")), "not in this node's pooling registry"),
        (lambda: pooled_body((DE, FR)), "below this node's minimum of 3"),
        (lambda: pooled_body(sigma=4.0), "below this node's own 5"),
        (lambda: pooled_body((DE, FI, FR, DK)), None),
    ],
)
async def test_a_round_the_node_does_not_take_part_in_is_refused_before_any_work(
    verifier: RequestVerifier,
    sign: Sign,
    pool_keys: PoolKeys,
    body: Callable[[], bytes],
    message: str | None,
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    store = MemoryAuditStore()
    svc = pooling_service(verifier, pool_keys, backend=backend, store=store)
    if message is None:  # the control: a round it takes part in
        assert (await ask(svc, sign, body())).status is NodeStatus.OK
        return
    with pytest.raises(PoolRefused, match=message) as refused:
        await ask(svc, sign, body())
    assert refused.value.code is ErrorCode.POOL_REFUSED
    assert backend.statements == []
    (row,) = store.rows["node:tessera-node-fr"]
    assert row.record().decision is Decision.REFUSED
    assert row.record().error_code is ErrorCode.POOL_REFUSED


async def test_a_round_of_a_measure_that_does_not_pool_securely_is_refused_before_any_work(
    verifier: RequestVerifier, sign: Sign, pool_keys: PoolKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = MeasureKind.PERSON_COUNT
    monkeypatch.setitem(MEASURES, count, dataclasses.replace(MEASURES[count], secure=False))
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    svc = pooling_service(verifier, pool_keys, backend=backend)
    with pytest.raises(PoolRefused, match="only one that pools securely"):
        await ask(svc, sign, pooled_body())
    assert backend.statements == []


async def test_a_nonce_is_never_taken_twice(
    verifier: RequestVerifier, sign: Sign, pool_keys: PoolKeys
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    svc = pooling_service(verifier, pool_keys, backend=backend, answers=MemoryAnswers())
    nonce = next(NONCES)
    await ask(svc, sign, pooled_body(nonce=nonce))
    statements = len(backend.statements)
    # Even for another round or participant set: the same masks must never mask twice.
    with pytest.raises(PoolRefused, match="nonce was used before"):
        await ask(svc, sign, pooled_body((DE, FI, FR, DK), nonce=nonce, round_number=2))
    assert len(backend.statements) == statements


async def test_a_node_without_pooling_keys_refuses_every_round(
    verifier: RequestVerifier, sign: Sign
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    svc = pooling_service(verifier, None, backend=backend)
    with pytest.raises(PoolRefused, match="no pooling key"):
        await ask(svc, sign, pooled_body())
    # ... and answers every question that pools nothing, as always.
    plain = request_body(Criteria(conditions=[E11]), [(), (SEX,)])
    assert (await ask(svc, sign, plain)).status is NodeStatus.OK


async def test_a_node_whose_policy_stays_out_refuses_every_round(
    verifier: RequestVerifier, sign: Sign, pool_keys: PoolKeys
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    staying_out = fr_policy_with(enabled=False, min_nodes=3)
    svc = pooling_service(verifier, pool_keys, backend=backend, policy_=staying_out)
    with pytest.raises(PoolRefused, match="does not take part"):
        await ask(svc, sign, pooled_body())


async def test_a_node_layer_may_ask_for_more_nodes(
    verifier: RequestVerifier, sign: Sign, pool_keys: PoolKeys
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    svc = pooling_service(
        verifier, pool_keys, backend=backend, policy_=fr_policy_with(enabled=True, min_nodes=4)
    )
    with pytest.raises(PoolRefused, match="minimum of 4"):
        await ask(svc, sign, pooled_body((DE, FI, FR)))
    assert (await ask(svc, sign, pooled_body((DE, DK, FI, FR)))).status is NodeStatus.OK


@pytest.mark.parametrize(
    "change",
    [
        {"nonce": "short"},
        {"participants": [FR, DE, FI]},  # not in ascending order
        {"participants": [DE, DE, FR]},
        {"participants": [FR]},
        {"tables": [(Dimension.AGE_BAND_10,)]},  # not a table of the query
        {"tables": [(SEX,)], "national": [(SEX,)]},  # the total neither pooled nor national
        {"round": 3},
    ],
)
async def test_a_malformed_round_is_a_bad_request(
    verifier: RequestVerifier, sign: Sign, pool_keys: PoolKeys, change: dict[str, Any]
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    svc = pooling_service(verifier, pool_keys, backend=backend)
    data = json.loads(pooled_body())
    data["pooling"].update(change)
    body = json.dumps(data).encode()
    with pytest.raises(BadRequest, match="pooling"):
        await ask(svc, sign, body)
    assert backend.statements == []
