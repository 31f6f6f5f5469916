"""The differencing guard's populations: the bitmap of a cohort's person ids, however built,
and the ids a backend may hand it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyroaring import BitMap64

from connectors.backends.base import person_ids
from connectors.errors import BackendFailed
from connectors.history import population_of

# Around the boundary of the 32-bit fast path, and far beyond it.
IDS = st.lists(
    st.integers(0, 2**32 + 5) | st.integers(2**32 - 5, 2**32 + 5) | st.integers(0, 2**63 - 1),
    max_size=200,
)


@given(IDS)
def test_a_population_holds_exactly_its_ids(ids: list[int]) -> None:
    expected = BitMap64(ids)
    assert population_of(np.array(ids, dtype=np.uint64)) == expected
    assert population_of(iter(ids)) == expected


def test_a_dense_cohort_takes_the_32_bit_path_and_stays_64_bit() -> None:
    ids = np.arange(1, 3_000_000, 3, dtype=np.uint64)
    population = population_of(ids)
    assert isinstance(population, BitMap64)
    assert len(population) == len(ids)
    assert population.intersection_cardinality(BitMap64(range(1, 100, 3))) == 33
    assert population_of(np.array([], dtype=np.uint64)) == BitMap64()


@pytest.mark.parametrize("ids", [[3, -1], [2**64]])
def test_person_ids_out_of_range_fail_the_query(ids: list[int]) -> None:
    with pytest.raises(BackendFailed):
        person_ids(iter(ids))
