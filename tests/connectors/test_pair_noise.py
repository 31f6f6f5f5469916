"""The noise of two questions whose difference is a small set ("A" and "A without X"), drawn
by the node's real release path (OpenDP's sampler, its reserve, the answer store): independent,
each of the sd it states. The differencing attacks (classes 13, 14 and 17 of `bench.attacks`)
rely on nothing else; a draw replayed or keyed on something the two share would show here as
a difference with less spread than √2 sd.

OpenDP's sampler cannot be seeded: the bounds are wide enough that an honest sampler fails
them about once in 10⁴ runs (each bound's tail is about 10⁻⁵), and narrow enough that a
difference with half the variance it states fails them nine times in ten."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from numpy.typing import NDArray

from connectors.answers import MemoryAnswers
from connectors.backends.duckdb import DuckDBBackend
from connectors.ledger import MemoryLedger
from connectors.noise import DiscreteGaussian
from connectors.service import QueryService
from oversight.audit.log import AuditLog
from oversight.audit.store import MemoryAuditStore
from schema.codes import Jurisdiction, MeasureKind, NodeStatus, Vocabulary
from schema.query import Criteria, EventCriterion
from tests.connectors.connector_kit import (
    approval_token,
    approval_verifier,
    policy,
    request_body,
)
from trust.request_token import RequestVerifier, load_verifying_keys

Sign = Callable[..., str]
COUNT = MeasureKind.PERSON_COUNT
# The fixture database: 47 persons counted, 5 of them with E10 (type 1 diabetes).
EVERYONE = Criteria()
WITHOUT_E10 = Criteria(
    conditions=[EventCriterion(vocabulary=Vocabulary.ICD10, code="E10", exclude=True)]
)
TRUTH = (47, 42)
PAIRS = 150
SD = 5.0


@pytest.fixture
def verifier(gateway_public_pem: Path) -> RequestVerifier:
    return RequestVerifier(
        keys=load_verifying_keys({"gateway-2024": gateway_public_pem}),
        issuer="tessera-gateway",
        audience="tessera-node-fr",
    )


def _rms(values: NDArray[np.float64]) -> float:
    return math.sqrt(float(np.mean(np.square(values))))


async def test_a_question_and_its_complement_draw_independent_noise_of_the_stated_sd(
    omop_db: Path, verifier: RequestVerifier, sign: Sign
) -> None:
    backend = DuckDBBackend(omop_db)
    svc = QueryService(
        jurisdiction=Jurisdiction.FR,
        backend=backend,
        verifier=verifier,
        approvals=approval_verifier(Jurisdiction.FR),
        policy=policy(),
        audit=AuditLog(
            MemoryAuditStore(), "node:tessera-node-fr", signing_key=Ed25519PrivateKey.generate()
        ),
        ledger=MemoryLedger(),
        answers=MemoryAnswers(),
        noise=DiscreteGaussian(),
    )
    errors = np.zeros((PAIRS, 2))
    try:
        # Each pair asked by an organisation (and researcher) of its own: its own noise, and
        # a budget nobody has spent.
        for i in range(PAIRS):
            for k, criteria in enumerate((EVERYONE, WITHOUT_E10)):
                body = request_body(criteria)
                response = await svc.handle(
                    authorization=f"Bearer {sign(body)}",
                    body=body,
                    approval_token=approval_token(applicant=f"Org {i}", sub=f"r{i}@org{i}.eu"),
                )
                assert response.status is NodeStatus.OK
                (cell,) = response.tables[0].cells
                value = cell.values[COUNT]
                assert value.value is not None
                assert value.sd == SD
                errors[i, k] = value.value - TRUTH[k]
    finally:
        await backend.close()
    plus, minus = errors[:, 0], errors[:, 1]
    # Each question's noise has the stated sd (χ² with 150 degrees: 0.76 to 1.25 times it
    # is the band outside which it falls 10⁻⁵ of the time on either side) and no bias (mean
    # within 4.5 standard errors).
    for e in (plus, minus):
        assert 0.76 * SD < _rms(e) < 1.25 * SD
        assert abs(float(np.mean(e))) < 4.5 * SD / math.sqrt(PAIRS)
    # Independent: no correlation (Fisher's z, 4.4 standard errors), and their difference,
    # the attacker's reading of the 5 persons with E10, spreads by √2 sd.
    r = float(np.corrcoef(plus, minus)[0, 1])
    assert abs(r) < math.tanh(4.4 / math.sqrt(PAIRS - 3))
    assert 0.76 * math.sqrt(2) * SD < _rms(plus - minus) < 1.25 * math.sqrt(2) * SD
