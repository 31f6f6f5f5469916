"""Whatever a definition holds, the import fails closed: a translation or `AtlasRefused` with
its reasons, never another exception. Published definitions and one that uses every element
translated, each with one element removed or replaced by a value of another type, at any
depth."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.atlas import AtlasCohort, AtlasRefused, import_definition
from tests.atlas.atlas_kit import EVERYTHING

FIXTURES = Path(__file__).parent / "fixtures"
DEFINITIONS = [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))] + [EVERYTHING]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.just([]),
    st.just({}),
    st.just([{"Coeff": -1}]),
    st.just({"Value": float("inf"), "Op": "bt", "Extent": 3}),
    st.just({"Value": "2020-02-30", "Op": "lt"}),
    st.just({"Days": 10**9, "Coeff": 5}),
    st.just({"Type": 2, "Count": -1}),
    st.just([{"CONCEPT_ID": 9201}, {"CONCEPT_ID": "x"}]),
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += paths(value, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    definition = copy.deepcopy(draw(st.sampled_from(DEFINITIONS)))
    path = draw(st.sampled_from(paths(definition)))
    *parents, last = path
    node = definition
    for key in parents:
        node = node[key]
    if draw(st.booleans()) and isinstance(node, dict):
        del node[last]
    else:
        node[last] = draw(VALUES)
    return definition


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(definition=mutated())
def test_a_mutated_definition_is_translated_or_refused(definition: Any) -> None:
    refusals: tuple[Any, ...] = ()
    try:
        cohort: AtlasCohort | None = import_definition(definition)
    except AtlasRefused as refused:
        cohort, refusals = None, refused.refusals
    if cohort is None:
        assert refusals
        assert all(r.message for r in refusals)
    else:
        assert isinstance(cohort, AtlasCohort)
