"""EHDS Art. 71: a person who opts out disappears from every count, in every table, and the
node reports the register version it used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from connectors.backends.duckdb import DuckDBBackend
from connectors.compiler import DUCKDB, ConceptResolver, compile_query
from connectors.prepare import prepare_database
from schema.codes import Dimension, MeasureKind
from schema.query import CohortQuery, Criteria
from tests.connectors.connector_kit import REFERENCE_DATE

TABLES = [
    (),
    (Dimension.SEX,),
    (Dimension.AGE_BAND_10,),
    (Dimension.SEX, Dimension.AGE_BAND_20),
    (Dimension.CALENDAR_YEAR,),
]
PERSON = 7


def person_index_of(database: Path, person_id: int) -> int:
    with duckdb.connect(str(database), read_only=True) as con:
        row = con.execute(
            "SELECT person_index FROM tessera_person WHERE person_id = ?", [person_id]
        ).fetchone()
    assert row is not None
    return int(row[0])


async def counted(database: Path) -> tuple[dict[Any, int], set[int], str]:
    """The raw counts the node's disclosure control starts from, the cohort's person ids and
    the register version, straight from the compiled statements."""
    backend = DuckDBBackend(database)
    try:
        query = CohortQuery(criteria=Criteria(), reference_date=REFERENCE_DATE, tables=TABLES)
        compiled = await ConceptResolver(backend.execute, dialect=DUCKDB).bind(compile_query(query))
        cells = {
            (by, cell.key): cell.values[MeasureKind.PERSON_COUNT]
            for by, table in compiled.tabulate(await backend.execute(compiled))
            for cell in table
        }
        persons = {int(row[0]) for row in await backend.execute(compiled.population())}
        return cells, persons, await backend.optout_register_version()
    finally:
        await backend.close()


async def test_an_opted_out_person_disappears_from_every_count(
    tmp_path: Path, build_omop_db: Any
) -> None:
    database = build_omop_db(tmp_path / "optout.duckdb", opted_out=())
    state = tmp_path / "state"
    # The fixture's person indexes are written by hand; a node's come from prepare, which
    # refuses to index a database indexed before against a state without its person index.
    with duckdb.connect(str(database)) as con:
        con.execute("DELETE FROM tessera_person")
    prepare_database(database, state=state)
    index = person_index_of(database, PERSON)
    before, population_before, version_before = await counted(database)
    assert index in population_before

    prepare_database(database, state=state, optout_ids=[PERSON], register_version="register-2")
    after, population_after, version_after = await counted(database)

    assert person_index_of(database, PERSON) == index  # an opt-out changes no index
    assert (version_before, version_after) != (version_after, version_after)
    assert version_after == "register-2"
    assert population_after == population_before - {index}
    changed = {key for key in before if before[key] != after.get(key, 0)}
    # Exactly one cell per table lost exactly one person: the cell the person was in.
    assert sorted(by for by, _ in changed) == sorted(TABLES)
    for key in changed:
        assert after.get(key, 0) == before[key] - 1
