"""Where a question's persons are decided on, by where the hub keeps its privacy ledger
(`TESSERA_CONNECTOR_LEDGER`):

- beside the connector (`connectors.ledger`): the cohort's person indexes come to Python, the
  NumPy ledger decides and charges, and the persons it leaves out go back to the database for
  the tables statement;
- in the engine (`connectors.backends.spark_ledger`): the ledger's tables are in the
  database, admission and charges are statements there, and only the tables and a count come
  back.

`QueryService` asks a `Population` for each question: compute, admit, flush, tables.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from connectors.backends.base import CohortRun, PersonIndexes
from connectors.compiler import Row
from connectors.ledger import Account, Ledger


@runtime_checkable
class EngineCohort(CohortRun, Protocol):
    """A cohort whose backend can keep it, and the persons left out, in the engine."""

    async def cache(self) -> None:
        """Compute the cohort where the engine keeps it, bringing nothing back."""
        ...

    async def admitted_tables(self) -> list[Row]:
        """The tables without the persons the ledger in the engine left out."""
        ...


class EngineAdmission(Protocol):
    worst_case: dict[str, int]

    @property
    def charged(self) -> asyncio.Future[None]: ...


@runtime_checkable
class CohortLedger(Protocol):
    """A ledger kept in the engine: it decides on a cohort where the cohort is."""

    async def admit_cohort(
        self, accounts: Sequence[Account], cohort: EngineCohort, cost: int
    ) -> EngineAdmission: ...


class Population(Protocol):
    async def compute(self) -> None:
        """Compute the cohort (while the answers and the ledger are looked up)."""
        ...

    async def admit(self, accounts: Sequence[Account], cost: int) -> dict[str, int]:
        """Decide who is counted and start charging them: each account's worst case."""
        ...

    async def flush(self) -> None:
        """Return once the charges are durable: nothing is released before."""
        ...

    async def tables(self) -> list[Row]:
        """The tables of the persons counted."""
        ...


class BesidePopulation:
    """The ledger beside the connector: person indexes to Python and back."""

    def __init__(self, ledger: Ledger, cohort: CohortRun) -> None:
        self._ledger = ledger
        self._cohort = cohort
        self._persons: PersonIndexes | None = None
        self._excluded: PersonIndexes | None = None

    async def compute(self) -> None:
        self._persons = await self._cohort.persons()

    async def admit(self, accounts: Sequence[Account], cost: int) -> dict[str, int]:
        persons = self._persons
        assert persons is not None, "listed first"
        admitted = await self._ledger.admit(accounts, persons, cost)
        self._excluded = persons[~admitted.counted]
        # Person indexes live only between the cohort and the ledger.
        self._persons = None
        return admitted.worst_case

    async def flush(self) -> None:
        await self._ledger.flush()

    async def tables(self) -> list[Row]:
        assert self._excluded is not None, "admitted first"
        return await self._cohort.tables(self._excluded)


class EnginePopulation:
    """The ledger in the engine: the cohort, the decision and the charges stay there."""

    def __init__(self, ledger: CohortLedger, cohort: EngineCohort) -> None:
        self._ledger = ledger
        self._cohort = cohort
        self._charged: asyncio.Future[None] | None = None

    async def compute(self) -> None:
        await self._cohort.cache()

    async def admit(self, accounts: Sequence[Account], cost: int) -> dict[str, int]:
        admitted = await self._ledger.admit_cohort(accounts, self._cohort, cost)
        self._charged = admitted.charged
        return admitted.worst_case

    async def flush(self) -> None:
        assert self._charged is not None, "admitted first"
        await asyncio.shield(self._charged)

    async def tables(self) -> list[Row]:
        return await self._cohort.admitted_tables()


def population(ledger: Ledger, cohort: CohortRun) -> Population:
    """How `cohort`'s persons are decided on with `ledger`."""
    if isinstance(ledger, CohortLedger):
        if not isinstance(cohort, EngineCohort):
            raise TypeError("a ledger in the engine needs a cohort kept in that engine")
        return EnginePopulation(ledger, cohort)
    return BesidePopulation(ledger, cohort)
