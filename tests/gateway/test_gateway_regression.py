"""The gateway's regression pipeline (`gateway.regression`) asked directly, without GraphQL,
with nodes of the test's own (`RegressionClient`): each node's part computed from a design in
memory by the node's own arithmetic, one node hostile. The hostile node's part is rejected
and left out with its reason; the others' are fitted; the refusal of a node's policy or
checks is a reason, not a failure; every fit has its audit entry."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from opentelemetry.sdk.trace import TracerProvider

from connectors.regression import Design, sufficient_statistics, symmetric, upper
from gateway.admission import Admission
from gateway.auth import Authenticator, Principal
from gateway.federation import NodeInfo, load_federation
from gateway.latency import WHOLE_DEADLINE
from gateway.nodes import MockNodeClient
from gateway.permits import PermitVerifier, Presented
from gateway.ratelimit import LimitPolicy, Limits, MemoryRateLimiter, RateGuard
from gateway.regression import RegressionQuestion, answer_regression
from gateway.regression_fit import NODE_DROPPED, REJECTED_PART
from gateway.service import Services
from oversight.audit.log import AuditLog
from oversight.audit.store import MemoryAuditStore
from policies.live import LivePolicy
from schema.codes import Jurisdiction, NodeStatus, ValueStatus
from schema.errors import ErrorCode, TesseraError
from schema.regression import RESOLUTION, RegressionPart, RegressionStep
from schema.result import Reason, Value
from tests.gateway.gateway_kit import (
    MEMBERS,
    POLICIES,
    REQUEST_ID,
    Keys,
    counts_handler,
    identity_token,
    permit,
    write_hdab_federation,
)
from trust.tokens import TokenVerifier

FR, DK, NO = MEMBERS
CHAIN = "gateway:regression"
INDEX = {"events": [{"domain": "CONDITION", "codes": [{"vocabulary": "ICD10", "code": "I10"}]}]}
MODEL: dict[str, Any] = {
    "family": "BINOMIAL",
    "outcome": {"kind": "EVENT", "event": {"domain": "DEATH"}},
    "covariates": [{"name": "female", "kind": "FEMALE"}],
}
Part = Callable[[RegressionPart], RegressionPart]


def design(seed: int, n: int = 400) -> Design:
    rng = np.random.default_rng(seed)
    female = rng.integers(0, 2, n).astype(float)
    y = (rng.random(n) < 1 / (1 + np.exp(1.0 - 0.5 * female))).astype(float)
    x = np.column_stack([np.ones(n), female])
    return Design(np.arange(n, dtype=np.uint32), x, y, (1,))


@dataclass
class Nodes:
    """Each node's part from its design at the asked β, by the node's own arithmetic, with
    the noise its policy calls for stated (and none added); `tamper` changes a node's part."""

    tamper: dict[Jurisdiction, Part] = field(default_factory=dict)
    refuse: set[Jurisdiction] = field(default_factory=set)
    # How many iterations a node answers before it refuses (every one when absent).
    answers: dict[Jurisdiction, int] = field(default_factory=dict)
    calls: list[Jurisdiction] = field(default_factory=list)

    async def step(
        self,
        node: NodeInfo,
        step: RegressionStep,
        *,
        approval_token: str,
        timeout: float,  # noqa: ASYNC109 - the protocol's
    ) -> RegressionPart:
        j = node.jurisdiction
        self.calls.append(j)
        if j in self.refuse or self.calls.count(j) > self.answers.get(j, len(self.calls)):
            return RegressionPart(
                query_id=step.request.query_id,
                jurisdiction=j,
                status=NodeStatus.DENIED,
                reasons=[Reason(rule="REGRESSION_SPARSE_LEVEL", jurisdiction=j)],
            )
        model = step.model
        h, v, _ = sufficient_statistics(design(MEMBERS.index(j)), model, step.beta)
        deltas = model.sensitivities()
        sd = POLICIES.profile(j).noise_sd() * step.noise_scale
        part = RegressionPart(
            query_id=step.request.query_id,
            jurisdiction=j,
            status=NodeStatus.OK,
            n=Value(value=400, status=ValueStatus.PERTURBED, sd=sd),
            information=symmetric(upper(h), len(v)),
            score=[float(x) for x in v],
            sd_information=sd * deltas[0] * RESOLUTION,
            sd_score=sd * deltas[1] * RESOLUTION,
        )
        return self.tamper.get(j, lambda p: p)(part)


@dataclass
class Caller:
    services: Services
    permits: list[str]

    def principal(self) -> Principal:
        return self.services.authenticator.authenticate(f"Bearer {identity_token()}")

    def presented(self) -> Presented:
        return self.services.permits.present(self.principal(), self.permits)

    def admit_cohort(self) -> Any:
        return type("Place", (), {"free": lambda self: None})()

    def charge(self, cost: int) -> None:
        return None


def services(tmp_path: Path, nodes: Nodes, store: MemoryAuditStore) -> Services:
    keys = Keys(gateway=Ed25519PrivateKey.generate(), hdab=Ed25519PrivateKey.generate())
    federation = load_federation(write_hdab_federation(tmp_path, keys))
    return Services(
        federation=federation,
        authenticator=Authenticator(audience=federation.gateway_id, issuers=federation.issuers),
        node_client=MockNodeClient(counts_handler()),
        policies=LivePolicy.fixed(POLICIES),
        permits=PermitVerifier(
            TokenVerifier(audience=federation.gateway_id, issuers=federation.issuers.values())
        ),
        rate_guard=RateGuard(
            MemoryRateLimiter(), LimitPolicy(default=Limits(60, 1000), cap=Limits(60, 1000))
        ),
        deadline_s=2.0,
        node_timeouts=WHOLE_DEADLINE,
        max_query_cost=10_000,
        audit=AuditLog(store, CHAIN, signing_key=None),
        tracer=TracerProvider().get_tracer("test"),
        regression_client=nodes,
    )


QUESTION = RegressionQuestion(request=REQUEST_ID, criteria={}, index=INDEX, model=MODEL)


def asymmetric(part: RegressionPart) -> RegressionPart:
    h = [list(row) for row in part.information]
    h[0][1] += 1.0
    return part.model_copy(update={"information": h})


def wrong_shape(part: RegressionPart) -> RegressionPart:
    return part.model_copy(update={"score": part.score[:-1]})


def quiet(part: RegressionPart) -> RegressionPart:
    return part.model_copy(update={"sd_score": 0.0})


@pytest.mark.parametrize("tamper", [asymmetric, wrong_shape, quiet])
async def test_a_hostile_nodes_part_is_rejected_and_the_others_fitted(
    tmp_path: Path, tamper: Part
) -> None:
    nodes = Nodes(tamper={DK: tamper})
    store = MemoryAuditStore()
    svc = services(tmp_path, nodes, store)
    answer = await answer_regression(svc, Caller(svc, [permit(j) for j in MEMBERS]), QUESTION)
    fit = answer.fit
    assert set(fit.n) == {FR, NO}
    assert [(r.rule, r.jurisdiction) for r in fit.reasons] == [(REJECTED_PART, DK)]
    # DK was asked once: a node left out at the first iteration is not asked again.
    assert nodes.calls.count(DK) == 1
    assert nodes.calls.count(FR) == nodes.calls.count(NO) > 1
    assert [c.name for c in fit.coefficients] == ["(Intercept)", "female"]
    assert all(np.isfinite(c.estimate) and c.se > 0 for c in fit.coefficients)
    (entry,) = store.rows[CHAIN]
    assert entry.decision == "ANSWERED"
    assert "result_hash" in entry.body


async def test_a_refusing_node_is_a_reason_and_all_refusing_an_answer_without_a_fit(
    tmp_path: Path,
) -> None:
    nodes = Nodes(refuse={NO})
    svc = services(tmp_path, nodes, MemoryAuditStore())
    caller = Caller(svc, [permit(j) for j in MEMBERS])
    fit = (await answer_regression(svc, caller, QUESTION)).fit
    assert set(fit.n) == {FR, DK}
    assert [(r.rule, r.jurisdiction) for r in fit.reasons] == [("REGRESSION_SPARSE_LEVEL", NO)]

    # Every node refusing: an answer without coefficients, each node's reason in it.
    everyone = Nodes(refuse=set(MEMBERS))
    (tmp_path / "all").mkdir()
    svc = services(tmp_path / "all", everyone, MemoryAuditStore())
    fit = (await answer_regression(svc, Caller(svc, [permit(j) for j in MEMBERS]), QUESTION)).fit
    assert fit.coefficients == []
    assert not fit.converged
    assert {(r.rule, r.jurisdiction) for r in fit.reasons} == {
        ("REGRESSION_SPARSE_LEVEL", j) for j in MEMBERS
    }
    assert sorted(everyone.calls) == sorted(MEMBERS)  # asked once each


async def test_a_node_that_stops_answering_ends_the_fit_at_the_last_step_all_answered(
    tmp_path: Path,
) -> None:
    # DK answers two iterations, then refuses (its budget spent, say): the sums over the
    # other nodes alone would be another model's, so the fit stops, with the last step every
    # node answered as its answer, not converged, and DK's drop as a reason.
    nodes = Nodes(answers={DK: 2})
    svc = services(tmp_path, nodes, MemoryAuditStore())
    fit = (await answer_regression(svc, Caller(svc, [permit(j) for j in MEMBERS]), QUESTION)).fit
    assert nodes.calls.count(DK) == 3
    assert not fit.converged
    assert fit.iterations == 2
    assert [(r.rule, r.jurisdiction) for r in fit.reasons] == [(NODE_DROPPED, DK)]
    assert [c.name for c in fit.coefficients] == ["(Intercept)", "female"]
    assert all(np.isfinite(c.estimate) and c.se > 0 and c.noise_sd > 0 for c in fit.coefficients)


async def test_an_invalid_model_is_refused_before_any_node_is_asked(tmp_path: Path) -> None:
    nodes = Nodes()
    svc = services(tmp_path, nodes, MemoryAuditStore())
    bad = RegressionQuestion(
        request=REQUEST_ID,
        criteria={},
        index=INDEX,
        model={**MODEL, "family": "POISSON", "outcome": {"kind": "AGE"}},
    )
    with pytest.raises(TesseraError) as refused:
        await answer_regression(svc, Caller(svc, [permit(j) for j in MEMBERS]), bad)
    assert refused.value.code is ErrorCode.INVALID_CRITERIA
    assert nodes.calls == []


async def test_an_index_of_all_events_is_refused_before_any_node_is_asked(tmp_path: Path) -> None:
    # Each term's window is taken at one index date per person: FIRST only.
    nodes = Nodes()
    svc = services(tmp_path, nodes, MemoryAuditStore())
    every = RegressionQuestion(
        request=REQUEST_ID, criteria={}, index={**INDEX, "occurrence": "ALL"}, model=MODEL
    )
    with pytest.raises(TesseraError) as refused:
        await answer_regression(svc, Caller(svc, [permit(j) for j in MEMBERS]), every)
    assert refused.value.code is ErrorCode.INVALID_CRITERIA
    assert "FIRST" in refused.value.message
    assert nodes.calls == []


async def test_a_fit_takes_a_turn_and_is_refused_busy_when_none_comes_within_the_deadline(
    tmp_path: Path,
) -> None:
    # A fit's iterations hold their parts as a count's fan-out does: it waits for a turn
    # (`gateway.admission`) like any question, and none of its nodes is asked without one.
    nodes = Nodes()
    store = MemoryAuditStore()
    svc = dataclasses.replace(
        services(tmp_path, nodes, store), admission=Admission(active=1, waiting=1)
    )
    release = asyncio.Event()

    async def hold() -> None:
        async with svc.admission.turn(within_s=5):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    caller = Caller(svc, [permit(j) for j in MEMBERS])
    with pytest.raises(TesseraError) as refused:
        await answer_regression(svc, caller, QUESTION)
    assert refused.value.code is ErrorCode.GATEWAY_BUSY
    assert nodes.calls == []
    (entry,) = store.rows[CHAIN]
    assert entry.decision != "ANSWERED"
    assert "GATEWAY_BUSY" in str(entry.body)

    # Its turn once free: fitted, and the turn given back.
    release.set()
    await holder
    fit = (await answer_regression(svc, caller, QUESTION)).fit
    assert [c.name for c in fit.coefficients] == ["(Intercept)", "female"]
    assert (svc.admission.in_phase, len(svc.admission.queue)) == (0, 0)
