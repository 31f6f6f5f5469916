"""Every breakdown dimension is complete: for each `Dimension` member there is a registry
entry (`schema/dimensions.py`), an SQL entry unless the gateway adds it
(`connectors/compiler/dimensions.py`), a golden SQL file computing it
(`tests/connectors/fixtures/compiler`), a value of the GraphQL enum, and the EU baseline
policy names it, allowed or not (`policies/layers/eu.toml`). `docs/adding-a-dimension.md`
says how to add each part; the check below fails, naming the part, while one is missing."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import graphql
import pytest

from connectors.compiler.dimensions import DIMENSION_SQL, ENTRIES, DimensionSql, sql_registry
from gateway.graphql.schema import sdl
from policies.loader import load_policy_set
from schema.codes import Dimension
from schema.dimensions import (
    DIMENSIONS,
    SPECS,
    DimensionSpec,
    IncompleteRegistry,
    registry,
)

GOLDEN = Path(__file__).parent / "connectors" / "fixtures" / "compiler"


@dataclass(frozen=True)
class Parts:
    """Everything a dimension needs, as found in the repository (or a test's variant)."""

    registry: Mapping[Dimension, DimensionSpec]
    sql: Mapping[Dimension, DimensionSql]
    graphql_values: frozenset[str]
    golden_sql: tuple[str, ...]
    baseline_names: frozenset[Dimension]


def gaps(members: Iterable[Dimension], parts: Parts) -> list[str]:
    """What each dimension lacks, one line per missing part."""
    found = []
    for dimension in members:
        name = dimension.value
        spec = parts.registry.get(dimension)
        if spec is None:
            found.append(f"{name}: no registry entry (schema/dimensions.py)")
        elif spec.node_computed:
            entry = parts.sql.get(dimension)
            if entry is None:
                found.append(f"{name}: no SQL entry (connectors/compiler/dimensions.py)")
            elif not any(_computes(text, entry.column) for text in parts.golden_sql):
                found.append(f"{name}: no golden SQL file computes {entry.column}")
        if name not in parts.graphql_values:
            found.append(f"{name}: no value of the GraphQL enum Dimension")
        if dimension not in parts.baseline_names:
            found.append(f"{name}: the EU baseline neither allows nor refuses it")
    return found


def _computes(sql: str, column: str) -> bool:
    return re.search(rf"\bAS {re.escape(column)}\b", sql) is not None


@functools.cache
def shipped_parts() -> Parts:
    enum = graphql.build_schema(sdl()).get_type("Dimension")
    assert isinstance(enum, graphql.GraphQLEnumType)
    baseline = load_policy_set().baseline.dimensions
    stated = [rule.value for rule in (baseline.allowed, baseline.not_allowed) if rule is not None]
    return Parts(
        registry=DIMENSIONS,
        sql=DIMENSION_SQL,
        graphql_values=frozenset(enum.values),
        golden_sql=tuple(path.read_text() for path in sorted(GOLDEN.glob("*.sql"))),
        baseline_names=frozenset().union(*stated),
    )


def test_every_dimension_has_every_part() -> None:
    missing = gaps(Dimension, shipped_parts())
    assert not missing, "see docs/adding-a-dimension.md:\n" + "\n".join(missing)


def test_the_registries_follow_the_dimension_order() -> None:
    assert list(DIMENSIONS) == list(Dimension)
    assert all(spec.dimension is d for d, spec in DIMENSIONS.items())
    assert all(entry.dimension is d for d, entry in DIMENSION_SQL.items())


def test_a_node_sends_keys_only_for_what_it_computes() -> None:
    for spec in DIMENSIONS.values():
        assert bool(spec.keys) == spec.node_computed, spec.dimension


# -- the check fails when a part is missing --------------------------------------------------
def _without(parts: Parts, dimension: Dimension, part: str) -> Parts:
    if part == "registry":
        return dataclasses.replace(
            parts, registry={d: s for d, s in parts.registry.items() if d is not dimension}
        )
    if part == "sql":
        return dataclasses.replace(
            parts, sql={d: e for d, e in parts.sql.items() if d is not dimension}
        )
    if part == "golden":
        # The golden files as if none computed this dimension (one file may compute several).
        column = re.escape(parts.sql[dimension].column)
        return dataclasses.replace(
            parts,
            golden_sql=tuple(re.sub(rf"\bAS {column}\b", "AS x", t) for t in parts.golden_sql),
        )
    if part == "graphql":
        return dataclasses.replace(parts, graphql_values=parts.graphql_values - {dimension.value})
    assert part == "baseline"
    return dataclasses.replace(parts, baseline_names=parts.baseline_names - {dimension})


CASES = [
    (dimension, part, expected)
    for dimension in Dimension
    for part, expected in (
        ("registry", "no registry entry"),
        ("sql", "no SQL entry"),
        ("golden", "no golden SQL file computes"),
        ("graphql", "no value of the GraphQL enum"),
        ("baseline", "the EU baseline neither allows nor refuses it"),
    )
    # The gateway adds JURISDICTION: no node computes it, so it has no SQL of its own.
    if DIMENSIONS[dimension].node_computed or part not in {"sql", "golden"}
]


@pytest.mark.parametrize(("dimension", "part", "expected"), CASES)
def test_the_check_names_a_missing_part(dimension: Dimension, part: str, expected: str) -> None:
    found = gaps(Dimension, _without(shipped_parts(), dimension, part))
    assert len(found) == 1
    assert found[0].startswith(f"{dimension.value}: {expected}")


def test_a_registry_without_an_entry_is_refused() -> None:
    with pytest.raises(IncompleteRegistry) as caught:
        registry(s for s in SPECS if s.dimension is not Dimension.CALENDAR_YEAR)
    assert caught.value.missing == (Dimension.CALENDAR_YEAR,)
    with pytest.raises(IncompleteRegistry) as caught:
        registry((*SPECS, SPECS[1]))
    assert caught.value.repeated == (Dimension.SEX,)


def test_an_sql_registry_must_cover_exactly_what_nodes_compute() -> None:
    with pytest.raises(ValueError, match=r"missing \['SEX'\]"):
        sql_registry(tuple(e for e in ENTRIES if e.dimension is not Dimension.SEX))
    gateway_only = DimensionSql(Dimension.JURISDICTION, "jurisdiction", ENTRIES[0].value)
    with pytest.raises(ValueError, match=r"not computed by a node \['JURISDICTION'\]"):
        sql_registry((*ENTRIES, gateway_only))
