"""The privacy ledger inside Spark: each account's per-person spend as tables of the engine,
admission computed in SQL, nothing per person brought out (`TESSERA_CONNECTOR_LEDGER=engine`).

The same ledger as `connectors.ledger` (each person's spend per account in units of 1e-5
rho; a question admitted in one step, the persons of its cohort whose spend plus its cost
stays within every account's cap counted and charged, the others left out of its counts; the
worst case over persons, data-independent, what the applicant is told), held in two tables of
a Spark database:

- `tessera_ledger_charge (seq, account, person_index, amount)`, append-only: each question
  appends, in one statement, a row per account and per person it charged, and a row per
  account with no person (`person_index` NULL) holding the question's cost, whose sum is the
  account's worst case. `seq` numbers the questions.
- `tessera_ledger_spend (upto, account, person_index, spent)`: a compaction, every
  `COMPACT_EVERY` questions, appends each person's and account's total of the charges up to
  question `upto` (and of the compaction before), so that a question reads one compaction and
  the charges after it rather than every charge since the first question.

Why append-only: plain Parquet and Hive tables take no UPDATE, DELETE or MERGE, and an
`INSERT OVERWRITE` deletes before it writes (a crash in between would lose every spend). An
append is the only write they take that never loses what was there; a question appends the few
megabytes of its own charges instead of rewriting every account's spend. Each append is one
file (`COALESCE(1)`): one rename commits it, so a crash leaves a question's rows whole or
absent; locally the file and its directory are synced before the question may be released, as
the journal of `connectors.ledger` is. On Delta (or Iceberg) the commit log makes every write
atomic and durable already: the charges would be a `MERGE` into one spend table per account
(no compaction, no `seq` filter), and old rows a `DELETE`: see bench/README.md.

A question, in its cohort's session (`connectors.backends.spark._Cohort`):

1. `CACHE TABLE tessera_excluded AS` the cohort's persons joined to their spends, those whose
   spend plus the cost passes any account's cap: computed from charges numbered before the
   question's own (`seq < :seq`), so that the view is the same however often Spark recomputes
   it (a cached block lost, the charge already written). Only its count comes back.
2. The charges appended (`INSERT … SELECT` the cohort without `tessera_excluded`), on a worker
   while the tables are computed; `flush` waits for it (synced), and nothing is released
   before: a crash between the charge and the release leaves the charge.
3. The tables statement leaves out `tessera_excluded` as it reads the cohort, in the engine.

Questions of one account are serialised (an account's lock is held from its decision until its
charge is written); questions of other accounts run beside it. One connector writes a ledger:
the lock is the connector's. `seq` is kept by the connector, read back (its maximum) when the
ledger opens. What comes back to Python per question: the count of persons left out and the
tables; the worst cases are kept in Python, as the Python ledger does, and read once per
account (a fixed-size aggregate).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from connectors.backends.base import PersonIndexes
from connectors.backends.schemas import SCHEMA_NAME
from connectors.backends.spark import SparkBackend, _Cohort
from connectors.compiler import SPARK, Row
from connectors.compiler.names import COHORT_TABLE, EXCLUDED_PERSONS, PERSON_INDEX_COLUMN
from connectors.durability import sync_directory
from connectors.errors import BackendFailed, LedgerUnavailable
from connectors.ledger import Account, Admitted
from connectors.population import EngineCohort

log = logging.getLogger(__name__)

CHARGE_TABLE: Final = "tessera_ledger_charge"
SPEND_TABLE: Final = "tessera_ledger_spend"
# A compaction once this many questions have charged since the last.
COMPACT_EVERY: Final = 64
_WHAT: Final = "privacy ledger"
LOCAL_DATABASE: Final = "tessera_ledger"
_COLUMNS: Final = {
    CHARGE_TABLE: (
        ("seq", "BIGINT"),
        ("account", "STRING"),
        (PERSON_INDEX_COLUMN, "BIGINT"),
        ("amount", "INT"),
    ),
    SPEND_TABLE: (
        ("upto", "BIGINT"),
        ("account", "STRING"),
        (PERSON_INDEX_COLUMN, "BIGINT"),
        ("spent", "INT"),
    ),
}
_PERSONS_SCHEMA: Final = pa.schema([(PERSON_INDEX_COLUMN, pa.int64())])
_PERSONS_DDL: Final = f"{PERSON_INDEX_COLUMN} BIGINT"


@dataclass(frozen=True, slots=True)
class EngineAdmitted:
    """What an admission in the engine tells Python: each account's worst case (this question
    included), how many persons of the cohort were left out, and the charge being written
    (awaiting it raises its failure: nothing may be released before it is done)."""

    worst_case: dict[str, int]
    excluded: int
    charged: asyncio.Future[None]


class _Params:
    """Bound values of one statement, named `:p1`, `:p2`, … in order (`spark._args`)."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def __call__(self, value: object) -> exp.Placeholder:
        self.values.append(value)
        return exp.Placeholder(this=f"p{len(self.values)}")


def _col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table)


def _sql(tree: exp.Expr) -> str:
    return tree.sql(dialect=SPARK.sqlglot)


def _appended(table: str, rows: exp.Query) -> str:
    """`INSERT INTO table` the rows of `rows`, written as one file: one rename commits it."""
    select = exp.select("*").from_(rows.subquery("r"))
    select.set("hint", exp.Hint(expressions=[exp.func("COALESCE", exp.Literal.number(1))]))
    return _sql(exp.insert(select, table))


def _parsed(query: str) -> exp.Query:
    tree = sqlglot.parse_one(query, dialect=SPARK.sqlglot)
    if not isinstance(tree, exp.Query):
        raise BackendFailed("the ledger was given a cohort that is not a query")
    return tree


def _listed(table: str, *, count: bool = False) -> str:
    """Every person of `table` (or how many)."""
    what = exp.func("COUNT", exp.Star()) if count else _col(PERSON_INDEX_COLUMN)
    return _sql(exp.select(what).from_(table))


class _Statements:
    """The ledger's statements over its two tables in database `schema`."""

    def __init__(self, schema: str) -> None:
        self.charge = f"{schema}.{CHARGE_TABLE}"
        self.spend = f"{schema}.{SPEND_TABLE}"
        self.tables = (self.charge, self.spend)

    def create(self, table: str, location: Path | None) -> str:
        columns = ", ".join(f"{name} {kind}" for name, kind in _COLUMNS[table])
        schema = self.charge.split(".")[0]
        where = "" if location is None else f" LOCATION '{location.absolute()}'"
        if location is not None and "'" in str(location.absolute()):
            raise ValueError("the ledger's directory may not hold a quote")
        sql = f"CREATE TABLE IF NOT EXISTS {schema}.{table} ({columns}) USING PARQUET{where}"
        return sql

    def entries(self, p: _Params, keys: Sequence[str], base: int, before: int | None) -> exp.Query:
        """Rows `(account, person_index, amount)` of `keys`: the compaction `base` and the
        charges after it (and before question `before`)."""
        accounts = [p(key) for key in keys]
        after: exp.Expr = _col("seq") > p(base)
        if before is not None:
            after = exp.and_(after, _col("seq") < p(before))
        charges = (
            exp.select("account", PERSON_INDEX_COLUMN, "amount")
            .from_(self.charge)
            .where(after, _col("account").isin(*accounts))
        )
        accounts = [p(key) for key in keys]
        compacted = (
            exp.select("account", PERSON_INDEX_COLUMN, exp.alias_(_col("spent"), "amount"))
            .from_(self.spend)
            .where(_col("upto").eq(p(base)), _col("account").isin(*accounts))
        )
        return exp.union(charges, compacted, distinct=False)

    def worst_cases(self, p: _Params, keys: Sequence[str], base: int) -> str:
        entries = self.entries(p, keys, base, None).subquery("e")
        return _sql(
            exp.select("account", exp.func("SUM", _col("amount")))
            .from_(entries)
            .where(_col(PERSON_INDEX_COLUMN).is_(exp.null()))
            .group_by("account")
        )

    def excluded(
        self,
        p: _Params,
        persons: str,
        keys: Sequence[str],
        limits: Sequence[int],
        base: int,
        seq: int,
    ) -> exp.Query:
        """The persons of `persons` (a query of one column, `person_index`) whose spend in some
        account of `keys` passes its limit (cap less cost), from the charges before `seq`."""
        cohort = _parsed(persons)
        entries = self.entries(p, keys, base, seq).subquery("e")
        sums = [
            exp.alias_(
                exp.func(
                    "SUM",
                    exp.If(
                        this=_col("account").eq(p(key)),
                        true=_col("amount"),
                        false=exp.Literal.number(0),
                    ),
                ),
                f"s{n}",
            )
            for n, key in enumerate(keys)
        ]
        spends = (
            exp.select(PERSON_INDEX_COLUMN, *sums)
            .from_(entries)
            .where(_col(PERSON_INDEX_COLUMN).is_(exp.null()).not_())
            .group_by(PERSON_INDEX_COLUMN)
            .subquery("s")
        )
        over = exp.or_(*(_col(f"s{n}", "s") > p(limit) for n, limit in enumerate(limits)))
        return (
            exp.select(_col(PERSON_INDEX_COLUMN, "c"))
            .from_(cohort.subquery("c"))
            .join(spends, on=_col(PERSON_INDEX_COLUMN, "s").eq(_col(PERSON_INDEX_COLUMN, "c")))
            .where(over)
        )

    def cache_excluded(self, query: exp.Query) -> str:
        return _sql(exp.Cache(this=exp.to_table(EXCLUDED_PERSONS), expression=query))

    def charge_insert(
        self, p: _Params, persons: str, keys: Sequence[str], seq: int, cost: int
    ) -> str:
        """The question's charges: every person of `persons` not in `tessera_excluded`, in
        every account, and each account's cost; one file."""
        cohort = _parsed(persons)
        # NOT EXISTS, not NOT IN: Spark runs NOT IN as a null-aware anti-join, which it can
        # only broadcast, and a national cohort's list of persons does not fit a driver.
        listed = (
            exp.select("1")
            .from_(exp.to_table(EXCLUDED_PERSONS).as_("x"))
            .where(_col(PERSON_INDEX_COLUMN, "x").eq(_col(PERSON_INDEX_COLUMN, "c")))
        )
        counted = (
            exp.select(_col(PERSON_INDEX_COLUMN, "c"))
            .from_(cohort.subquery("c"))
            .where(exp.not_(exp.Exists(this=listed)))
            .subquery("k")
        )
        accounts = exp.Values(
            expressions=[exp.tuple_(p(key)) for key in keys],
            alias=exp.TableAlias(
                this=exp.to_identifier("a"), columns=[exp.to_identifier("account")]
            ),
        )
        seq_value, cost_value = p(seq), p(cost)
        persons_rows = (
            exp.select(
                exp.alias_(exp.cast(seq_value, "BIGINT"), "seq"),
                _col("account", "a"),
                exp.alias_(exp.cast(_col(PERSON_INDEX_COLUMN, "k"), "BIGINT"), PERSON_INDEX_COLUMN),
                exp.alias_(exp.cast(cost_value, "INT"), "amount"),
            )
            .from_(counted)
            .join(accounts, join_type="CROSS")
        )
        costs = exp.select(
            exp.alias_(exp.cast(p(seq), "BIGINT"), "seq"),
            _col("account", "a"),
            exp.alias_(exp.cast(exp.null(), "BIGINT"), PERSON_INDEX_COLUMN),
            exp.alias_(exp.cast(p(cost), "INT"), "amount"),
        ).from_(accounts.copy())
        return _appended(self.charge, exp.union(persons_rows, costs, distinct=False))

    def compact(self, p: _Params, base: int, upto: int) -> str:
        """Each account's and person's total up to question `upto` (the compaction `base`
        and the charges after it), as compaction `upto`; one file."""
        charges = (
            exp.select("account", PERSON_INDEX_COLUMN, "amount")
            .from_(self.charge)
            .where(_col("seq") > p(base), _col("seq") <= p(upto))
        )
        compacted = (
            exp.select("account", PERSON_INDEX_COLUMN, exp.alias_(_col("spent"), "amount"))
            .from_(self.spend)
            .where(_col("upto").eq(p(base)))
        )
        entries = exp.union(charges, compacted, distinct=False).subquery("e")
        totals = (
            exp.select(
                exp.alias_(exp.cast(p(upto), "BIGINT"), "upto"),
                "account",
                PERSON_INDEX_COLUMN,
                exp.alias_(exp.cast(exp.func("SUM", _col("amount")), "INT"), "spent"),
            )
            .from_(entries)
            .group_by("account", PERSON_INDEX_COLUMN)
        )
        return _appended(self.spend, totals)

    def latest(self) -> str:
        return _sql(
            exp.select(
                exp.select(exp.func("MAX", _col("seq"))).from_(self.charge).subquery(),
                exp.select(exp.func("MAX", _col("upto"))).from_(self.spend).subquery(),
            )
        )


def check_ledger_statement(sql: str, schema: str) -> None:
    """Raise unless `sql` is one of the ledger's writes: an `INSERT INTO` one of its two
    tables in `schema`, `CREATE TABLE IF NOT EXISTS` of one of them, or `CACHE TABLE
    tessera_excluded AS` a query; or a query. The connector writes nothing else."""
    try:
        statements = sqlglot.parse(sql, read=SPARK.sqlglot)
    except SqlglotError:
        statements = []
    ours = {f"{schema}.{CHARGE_TABLE}", f"{schema}.{SPEND_TABLE}"}

    def named(table: object) -> str:
        if isinstance(table, exp.Schema):
            table = table.this
        return _sql(table) if isinstance(table, exp.Table) else ""

    allowed = False
    if len(statements) == 1:
        (statement,) = statements
        if isinstance(statement, exp.Insert):
            # Appends only: an overwrite would delete spends before writing.
            allowed = (
                named(statement.this) in ours
                and not statement.args.get("overwrite")
                and isinstance(statement.expression, exp.Query)
            )
        elif isinstance(statement, exp.Create) and statement.args.get("exists"):
            if statement.kind == "SCHEMA":
                allowed = _sql(statement.this) == schema
            else:
                allowed = (
                    statement.kind == "TABLE"
                    and named(statement.this) in ours
                    and statement.expression is None
                )
        elif isinstance(statement, exp.Cache):
            allowed = _sql(statement.this) == EXCLUDED_PERSONS and isinstance(
                statement.args.get("expression"), exp.Query
            )
        else:
            allowed = isinstance(statement, exp.Query)
    if not allowed:
        raise BackendFailed("the ledger was sent a statement it does not write")


class SparkLedger:
    """The ledger as two tables of the Spark database `schema` (a cluster: one the hub
    names, writable by the connector's principal alone), or, for a local session
    (`spark:///`), of a database of its own in the session's catalog, the tables' Parquet
    files under `directory` (the node's state directory)."""

    def __init__(
        self,
        backend: SparkBackend,
        *,
        schema: str | None = None,
        directory: Path | None = None,
        compact_every: int = COMPACT_EVERY,
    ) -> None:
        local = backend.local
        if local and directory is None:
            raise ValueError("a ledger in a local Spark session needs a directory for its tables")
        if not local and schema is None:
            raise ValueError("a ledger in a Spark cluster needs the database of its tables")
        # Locally, a database of the ledger's own in the session's in-memory catalog, its
        # tables over the files in `directory`: two ledgers of one process never share one.
        name = f"{LOCAL_DATABASE}_{uuid.uuid4().hex[:8]}" if local else schema
        assert name is not None
        if not SCHEMA_NAME.match(name):
            raise ValueError(f"{name!r} is not a database name")
        self._backend = backend
        self._schema = name
        self._directory = directory if local else None
        self._statements = _Statements(name)
        self._compact_every = compact_every
        self._worst: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._writes: set[asyncio.Future[None]] = set()
        self._opened: asyncio.Future[None] | None = None
        self._seq = 0
        self._base = -1
        self._since_compaction = 0
        self._compacting: asyncio.Future[None] | None = None
        self._in_flight: set[int] = set()
        self._synced: set[str] = set()
        # Once the tables exist, each statement lists their files afresh.
        self._readable = False

    # -- statements ---------------------------------------------------------------------------

    async def _run(self, session: Any, sql: str, params: Sequence[object] = ()) -> list[Row]:
        check_ledger_statement(sql, self._schema)
        backend = self._backend

        tables = self._statements.tables if self._readable else ()

        def run(s: Any) -> list[Row]:
            # A session keeps the files it listed for a table: another session's appends
            # since would not be read (a question's own session is new, the backend's own
            # session is not). Listed afresh, as a new session would.
            for table in tables:
                s.catalog.refreshTable(table)
            return backend._fetched(s, sql, params)

        try:
            return await backend._interruptible(session, run)
        except BackendFailed as exc:
            raise LedgerUnavailable(f"the {_WHAT} cannot be read or written") from exc

    async def _write(self, session: Any, sql: str, params: Sequence[object] = ()) -> None:
        await self._run(session, sql, params)
        if self._directory is not None:
            with _ledger_io():
                await asyncio.to_thread(self._sync)

    def _sync(self) -> None:
        """Every file of the tables not yet synced, and their directories: an append is on
        disk before the question it charges is released."""
        assert self._directory is not None
        for table in _COLUMNS:
            folder = self._directory / table
            if not folder.is_dir():
                continue
            fresh = False
            for path in folder.iterdir():
                name = str(path)
                if path.name.startswith(("_", ".")) or name in self._synced or not path.is_file():
                    continue
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self._synced.add(name)
                fresh = True
            if fresh:
                sync_directory(folder)

    async def _open(self) -> None:
        if self._opened is None:
            self._opened = asyncio.ensure_future(self._create())
        await asyncio.shield(self._opened)

    async def _create(self) -> None:
        backend = self._backend
        try:
            session = await backend._call(backend._session)
            if self._directory is None:
                # Created beforehand by the hub, as a rule (the principal may not create one).
                with contextlib.suppress(LedgerUnavailable):
                    await self._run(session, _create_database_if_missing(self._schema))
            else:
                await self._run(session, _create_database_if_missing(self._schema))
            for table in _COLUMNS:
                where = None if self._directory is None else self._directory / table
                await self._write(session, self._statements.create(table, where))
            self._readable = True
            rows = await self._run(session, self._statements.latest())
        except BaseException:
            self._opened = None
            raise
        seq, upto = rows[0]
        self._base = -1 if upto is None else int(upto)
        self._seq = max(int(seq or 0), self._base) + 1

    # -- the Ledger protocol ----------------------------------------------------------------

    async def prepare(self, accounts: Sequence[Account]) -> None:
        await self._open()
        missing = [a.key for a in accounts if a.key not in self._worst]
        if missing:
            p = _Params()
            sql = self._statements.worst_cases(p, missing, self._base)
            session = await self._backend._call(self._backend._session)
            rows = await self._run(session, sql, p.values)
            found = {str(key): int(total) for key, total in rows}
            for key in missing:
                # A question charged meanwhile has the account's value already, and it stands.
                self._worst.setdefault(key, found.get(key, 0))

    async def worst_case(self, account: Account) -> int:
        await self.prepare([account])
        return self._worst[account.key]

    async def admit_cohort(
        self, accounts: Sequence[Account], cohort: EngineCohort, cost: int
    ) -> EngineAdmitted:
        """Decide on the cohort cached in `cohort`'s session and start its charge; the tables
        of the persons counted are then `cohort.admitted_tables()`, and
        `EngineAdmitted.charged` is the charge."""
        if not isinstance(cohort, _Cohort) or cohort.backend is not self._backend:
            raise TypeError("the ledger decides on cohorts of its own Spark backend")
        return await self._admit(accounts, cost, cohort.session, cohort.persons_relation())

    async def admit(
        self, accounts: Sequence[Account], persons: PersonIndexes, cost: int, *, reserve: int = 0
    ) -> Admitted:
        """The `connectors.ledger.Ledger` way in, for persons already in Python (a
        regression's design): sent to a session of their own, decided as a cohort is, and
        the persons left out fetched back to make the mask. `reserve`: what the rest of a fit
        may still cost, to be affordable beside `cost` and not charged."""
        backend = self._backend
        session = await backend._call(backend._question_session)
        listed = pa.table(
            {PERSON_INDEX_COLUMN: np.asarray(persons, dtype=np.int64)}, schema=_PERSONS_SCHEMA
        )

        def send(s: Any) -> None:
            s.createDataFrame(listed, schema=_PERSONS_DDL).createOrReplaceTempView(COHORT_TABLE)
            backend.transferred.sent += listed.nbytes

        try:
            await backend._interruptible(session, send)
            relation = _listed(COHORT_TABLE)
            admitted = await self._admit(accounts, cost, session, relation, reserve=reserve)
            await admitted.charged
            left_out: list[Row] = []
            if admitted.excluded:
                left_out = await self._run(session, _listed(EXCLUDED_PERSONS))
            counted = ~np.isin(
                np.asarray(persons, dtype=np.int64),
                np.asarray([int(r[0]) for r in left_out], dtype=np.int64),
            )
            return Admitted(counted, admitted.worst_case)
        finally:
            await asyncio.shield(asyncio.to_thread(backend._release, session))

    async def _admit(
        self,
        accounts: Sequence[Account],
        cost: int,
        session: Any,
        persons: str,
        *,
        reserve: int = 0,
    ) -> EngineAdmitted:
        if cost < 0 or reserve < 0:
            raise ValueError("a cost or a reserve is never negative")
        await self.prepare(accounts)
        keys = sorted({a.key for a in accounts})
        locks = [self._locks.setdefault(key, asyncio.Lock()) for key in keys]
        held: list[asyncio.Lock] = []
        try:
            for lock in locks:  # in the keys' order: two questions never wait on each other
                await lock.acquire()
                held.append(lock)
            worst = {a.key: self._worst[a.key] for a in accounts}
            statements = self._statements
            if cost == 0:
                # Charges nothing and counts everyone: an empty view to leave out.
                await self._run(
                    session,
                    statements.cache_excluded(
                        exp.select(_col(PERSON_INDEX_COLUMN))
                        .from_(_parsed(persons).subquery("c"))
                        .where(exp.false())
                    ),
                )
                nothing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                nothing.set_result(None)
                return EngineAdmitted(worst, 0, nothing)
            seq = self._seq
            self._seq += 1
            self._in_flight.add(seq)
            ordered = [a.key for a in accounts]
            p = _Params()
            if any(cost + reserve > a.cap for a in accounts):
                query: exp.Query = _parsed(persons)
            else:
                query = statements.excluded(
                    p, persons, ordered, [a.cap - cost - reserve for a in accounts], self._base, seq
                )
            try:
                await self._run(session, statements.cache_excluded(query), p.values)
                (count,) = await self._run(session, _listed(EXCLUDED_PERSONS, count=True))
            except BaseException:
                self._in_flight.discard(seq)
                raise
            charge = _Params()
            insert = statements.charge_insert(charge, persons, ordered, seq, cost)
            write = asyncio.ensure_future(self._write(session, insert, charge.values))
            self._writes.add(write)
            for account in accounts:
                worst[account.key] += cost
                self._worst[account.key] = worst[account.key]

            locked = held

            def done(finished: asyncio.Future[None]) -> None:
                for lock in locked:
                    lock.release()
                self._in_flight.discard(seq)
                # A failed charge is its question's to raise (`EngineAdmitted.charged`): that
                # question is not released, so the charge it lost was never owed.
                self._writes.discard(finished)
                if not finished.cancelled() and finished.exception() is None:
                    self._since_compaction += 1

            write.add_done_callback(done)
            held = []  # released when the charge is written
            return EngineAdmitted(worst, int(count[0]), write)
        finally:
            for lock in held:
                lock.release()

    async def flush(self) -> None:
        """Wait for every charge started so far (each question waits for its own through
        `EngineAdmitted.charged`), and start a compaction when one is due."""
        writes = list(self._writes)
        if writes:
            await asyncio.gather(*(asyncio.shield(w) for w in writes), return_exceptions=True)
        if self._since_compaction >= self._compact_every and self._compacting is None:
            self._compacting = asyncio.ensure_future(self._compact())
            self._compacting.add_done_callback(self._compacted)

    def _compacted(self, done: asyncio.Future[None]) -> None:
        self._compacting = None
        if not done.cancelled() and done.exception() is not None:
            log.warning("the ledger's compaction failed: %s", type(done.exception()).__name__)

    async def compact(self) -> None:
        """Fold the charges written so far into a compaction (see the module)."""
        await self._compact()

    async def _compact(self) -> None:
        # Every question numbered below the first still charging is written.
        upto = min(self._in_flight, default=self._seq) - 1
        if upto <= self._base:
            return
        p = _Params()
        session = await self._backend._call(self._backend._session)
        taken = self._since_compaction
        await self._write(session, self._statements.compact(p, self._base, upto), p.values)
        # Questions deciding from now on read this compaction; those deciding already read
        # the one before, which stays.
        self._base = upto
        self._since_compaction -= taken

    async def close(self) -> None:
        with contextlib.suppress(LedgerUnavailable):
            await self.flush()
        if self._compacting is not None:
            with contextlib.suppress(Exception):
                await self._compacting


def _create_database_if_missing(name: str) -> str:
    return _sql(exp.Create(this=exp.to_table(name), kind="SCHEMA", exists=True))


@contextlib.contextmanager
def _ledger_io() -> Any:
    try:
        yield
    except OSError as exc:
        raise LedgerUnavailable(f"the {_WHAT} cannot be written") from exc


__all__ = ["CHARGE_TABLE", "SPEND_TABLE", "EngineAdmitted", "SparkLedger", "check_ledger_statement"]
