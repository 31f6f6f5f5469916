"""Qualifying compiled SQL with the OHDSI layout's schemas (against the real PostgreSQL:
tests/connectors/test_backend_postgres.py)."""

from __future__ import annotations

import pytest

from connectors.backends.schemas import SchemaLayout, qualify

OHDSI = SchemaLayout("cdm", "vocab")


def test_tables_go_to_their_schema_and_local_names_stay() -> None:
    sql = (
        "WITH cohort AS (SELECT p.person_id FROM person AS p "
        "JOIN tessera_person AS k ON k.person_id = p.person_id) "
        "SELECT c.concept_id FROM concept AS c JOIN concept_ancestor AS a "
        "ON a.descendant_concept_id = c.concept_id, cohort "
        "WHERE c.concept_id = ANY($1)"
    )
    out = qualify(sql, OHDSI)
    for placed in ("cdm.person", "cdm.tessera_person", "vocab.concept", "vocab.concept_ancestor"):
        assert placed in out
    assert "cdm.cohort" not in out
    assert "$1" in out


def test_qualified_tables_are_left_alone() -> None:
    out = qualify("SELECT table_name FROM information_schema.tables", OHDSI)
    assert "FROM information_schema.tables" in out


@pytest.mark.parametrize("name", ["Cdm", "cdm;drop", "", "1cdm", "c" * 64])
def test_a_schema_name_must_need_no_quoting(name: str) -> None:
    with pytest.raises(ValueError, match="not a schema name"):
        SchemaLayout(name, "vocab")
