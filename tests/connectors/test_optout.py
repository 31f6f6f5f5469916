"""EHDS Art. 71: a person who opts out disappears from every count, in every table, and the
node reports the register version it used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connector_kit import policy, request_body

from connectors.backends.duckdb import DuckDBBackend
from connectors.prepare import prepare_database
from connectors.service import QueryService
from connectors.verify import RequestVerifier, load_gateway_keys
from schema.codes import Dimension, Jurisdiction
from schema.query import Criteria
from schema.wire import NodeResponse

# DE's minimum of 3 keeps most cells of the small fixture database released.
TABLES = [
    (),
    (Dimension.SEX,),
    (Dimension.AGE_BAND_10,),
    (Dimension.SEX, Dimension.AGE_BAND_20),
    (Dimension.CALENDAR_YEAR,),
]
PERSON = 7


def cells(response: NodeResponse) -> dict[tuple[Any, ...], int | None]:
    return {
        (table.by, tuple(cell.key)): cell.count.value
        for table in response.tables
        for cell in table.cells
    }


async def answer(database: Path, gateway_public_pem: Path, sign: Any) -> NodeResponse:
    backend = DuckDBBackend(database)
    verifier = RequestVerifier(
        keys=load_gateway_keys({"gateway-2024": gateway_public_pem}),
        issuer="tessera-gateway",
        audience="tessera-node-fr",
    )
    service = QueryService(
        jurisdiction=Jurisdiction.DE,
        backend=backend,
        verifier=verifier,
        policy=policy(Jurisdiction.DE),
    )
    body = request_body(Criteria(), TABLES, Jurisdiction.DE)
    try:
        return await service.handle(authorization=f"Bearer {sign(body)}", body=body)
    finally:
        await backend.close()


async def test_an_opted_out_person_disappears_from_every_count(
    tmp_path: Path, build_omop_db: Any, gateway_public_pem: Path, sign: Any
) -> None:
    database = build_omop_db(tmp_path / "optout.duckdb", opted_out=())
    before = await answer(database, gateway_public_pem, sign)

    prepare_database(database, optout_ids=[PERSON], register_version="register-2")
    after = await answer(database, gateway_public_pem, sign)

    assert after.optout_register_version == "register-2"
    assert before.optout_register_version != after.optout_register_version
    old, new = cells(before), cells(after)
    changed = {key: (old[key], new.get(key)) for key in old if old[key] != new.get(key)}
    # Exactly one cell per table lost exactly one person: the cell the person was in.
    assert sorted(by for by, _ in changed) == sorted(TABLES)
    for before_value, after_value in changed.values():
        assert before_value is not None
        assert after_value is None or after_value == before_value - 1
    assert new[((), ())] == old[((), ())] - 1  # type: ignore[operator]
