"""Apache Spark: a hub's cluster through Spark Connect, or a local session over Parquet files.

Two ways in (`connectors.backends.SCHEMES`):

- `sc://HOST:PORT` (Spark Connect, as pyspark spells it, `;token=…` and the like after the
  port): the hub's cluster. The CDM, its vocabularies and Tessera's tables are tables of the
  cluster's catalog (Delta, Parquet or Hive), found by the session's current database or, with
  a `SchemaLayout`, in the CDM and vocabulary databases named (every statement qualified, as
  with PostgreSQL).
- `spark:///PATH`: a Spark session in this process (`local[threads]`) over a directory of
  Parquet tables, one per table (`person/` or `person.parquet`, …, and Tessera's own:
  `tessera_person`, `tessera_optout`, …), each an external table of a database of the
  backend's own in Spark's in-memory catalog, so that every question's session sees them.

Every question runs in a session of its own (`newSession()` locally, a new Spark Connect
session on a cluster): its cohort is a cached temporary view (`CACHE TABLE tessera_cohort`),
computed once; the ledger reads its persons, and the tables are computed from the very same
rows without those the ledger leaves out, which come as a temporary view of their own made
from the ledger's NumPy column (Arrow, not a literal list). Parquet takes no DELETE, so nothing
is ever deleted: the tables statement leaves them out as it reads the view.

Statements run off the event loop on worker threads, each tagged; a cancelled caller (the
gateway gone, the node's query timeout) interrupts the tag's jobs and returns once the worker
is free, and a statement past `statement_timeout_s` is interrupted and fails. Spark has no
read-only session: a statement is run only if it is one query (or the cohort's `CACHE TABLE`),
and a hub gives the connector a principal that may only read the CDM. pyspark's and the
network's exceptions become `BackendFailed` / `BackendNotReady` here, messages free of SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from connectors.backends.base import CohortRun, PersonIndexes, person_indexes
from connectors.backends.readiness import check_ready, data_release, register_version
from connectors.backends.schemas import SchemaLayout, qualify
from connectors.compiler import SPARK, CompiledQuery, Row, Statement
from connectors.compiler.names import COHORT_TABLE, EXCLUDED_PERSONS, PERSON_INDEX_COLUMN
from connectors.errors import BackendFailed, BackendNotReady

log = logging.getLogger(__name__)
T = TypeVar("T")

# A local session's database of the Parquet tables: one per backend (`_LocalSpark`).
LOCAL_DATABASE: Final = "tessera_cdm"
# A table name as a Parquet directory may give it: the file names nothing else.
_TABLE_NAME: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# A question's statements run with few partitions: its rows are a cohort, not the CDM.
_SHUFFLE_PARTITIONS: Final = 8
_EXCLUDED_SCHEMA: Final = pa.schema([(PERSON_INDEX_COLUMN, pa.int64())])
_EXCLUDED_DDL: Final = f"{PERSON_INDEX_COLUMN} BIGINT"


# pyspark logs each failed statement's message, which may quote the statement, with its
# stack: the backend logs the exception's type only.
_QUIET_LOGGERS: Final = ("SQLQueryContextLogger", "DataFrameQueryContextLogger")


def _quiet() -> None:
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).disabled = True


def _failures() -> tuple[type[Exception], ...]:
    """What pyspark and the way to the cluster raise (imported where pyspark is)."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    return (PySparkException, Py4JError, OSError, pa.ArrowException)


@functools.lru_cache(maxsize=512)
def _read_only(sql: str, *, cohort: bool = False) -> None:
    """Raise unless `sql` is one query (or, for `cohort`, one `CACHE TABLE … AS query`): Spark
    has no read-only session, so nothing else a statement could say is ever sent."""
    try:
        statements = sqlglot.parse(sql, read=SPARK.sqlglot)
    except SqlglotError:
        statements = []
    allowed: tuple[type[exp.Expr], ...] = (exp.Cache,) if cohort else (exp.Query,)
    if len(statements) != 1 or not isinstance(statements[0], allowed):
        raise BackendFailed("the database was sent a statement that is not a query")
    if cohort and not isinstance(statements[0].args.get("expression"), exp.Query):
        raise BackendFailed("the database was sent a statement that is not a query")


def _args(params: Sequence[object]) -> dict[str, object]:
    """The values of `:p1`, `:p2`, … (`connectors.compiler.dialect.named`)."""
    return {f"p{n}": value for n, value in enumerate(params, 1)}


@dataclass
class Transferred:
    """Bytes that crossed between the engine and the connector's Python (Arrow buffers of
    results received, of tables sent): what `bench.spark_transfer` reports per question."""

    received: int = 0
    sent: int = 0


def _rows(table: pa.Table) -> list[Row]:
    columns = [column.to_pylist() for column in table.columns]
    return list(zip(*columns, strict=True)) if columns else []


class _Tagged:
    """How a statement's jobs are tagged and interrupted: a local session tags the
    SparkContext's jobs from the worker thread (`addJobTag`: the session's own tags do not
    reach the jobs of another thread's `interruptTag`); Spark Connect tags its operations."""

    def __init__(self, session: Any, *, local: bool) -> None:
        self._session = session
        self._local = local

    def add(self, tag: str) -> None:
        if self._local:
            self._session.sparkContext.addJobTag(tag)
        else:
            self._session.addTag(tag)

    def remove(self, tag: str) -> None:
        if self._local:
            self._session.sparkContext.removeJobTag(tag)
        else:
            self._session.removeTag(tag)

    def interrupt(self, tag: str) -> None:
        if self._local:
            self._session.sparkContext.cancelJobsWithTag(tag)
        else:
            self._session.interruptTag(tag)


class _Running:
    """The tag of one running statement, so that another thread can interrupt it."""

    def __init__(self, tagged: _Tagged, tag: str) -> None:
        self._lock = threading.Lock()
        self.tagged = tagged
        self.tag = tag
        self._started = False
        self._cancelled = False

    def start(self) -> bool:
        with self._lock:
            if self._cancelled:
                return False
            self._started = True
            return True

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._started:
                with contextlib.suppress(*_failures()):
                    self.tagged.interrupt(self.tag)


class _Cancelled(Exception):
    pass


# How often an interrupt is repeated until the statement has stopped: a job that had not
# started when it was first interrupted (Spark plans first) is interrupted once it has.
_INTERRUPT_EVERY_S: Final = 0.5


async def _interrupted(running: _Running, task: asyncio.Future[Any]) -> None:
    """Interrupt `running` until its worker is free again."""
    while not task.done():
        await asyncio.to_thread(running.cancel)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), _INTERRUPT_EVERY_S)
    with contextlib.suppress(Exception, asyncio.CancelledError):
        task.result()


class _Cohort:
    """One question's cohort, in a session of its own: a cached view, its persons, then the
    tables without those the ledger leaves out."""

    def __init__(self, backend: SparkBackend, session: Any, query: CompiledQuery) -> None:
        self._backend = backend
        self._session = session
        self._query = query

    async def _fetch(self, sql: str, params: tuple[object, ...]) -> list[Row]:
        return await self._backend._query(self._session, sql, params)

    async def optout_register_version(self) -> str:
        return await register_version(self._fetch, SPARK)

    async def data_release(self) -> str:
        return await data_release(self._fetch, SPARK)

    async def persons(self) -> PersonIndexes:
        create, persons = self._query.create_cohort(), self._query.cohort_persons()
        _read_only(create.sql, cohort=True)
        _read_only(persons.sql)
        backend = self._backend

        def fetch(session: Any) -> PersonIndexes:
            session.sql(backend._placed(create.sql), args=_args(create.params)).collect()
            fetched = session.sql(backend._placed(persons.sql)).toArrow()
            backend.transferred.received += fetched.nbytes
            column = fetched.column(0)
            if column.null_count:
                raise BackendFailed("the database returned a person without an index")
            return person_indexes(column.to_numpy())

        return await backend._interruptible(self._session, fetch)

    async def tables(self, excluded: PersonIndexes) -> list[Row]:
        tables = self._query.cohort_tables()
        _read_only(tables.sql)
        backend = self._backend
        listed = pa.table(
            {PERSON_INDEX_COLUMN: np.asarray(excluded, dtype=np.int64)}, schema=_EXCLUDED_SCHEMA
        )

        def compute(session: Any) -> list[Row]:
            # The ledger's column as a view of this session: sent as Arrow, joined as a hashed
            # anti-join, whatever its length.
            # Its schema given: Spark Connect infers none from an empty table.
            frame = session.createDataFrame(listed, schema=_EXCLUDED_DDL)
            backend.transferred.sent += listed.nbytes
            frame.createOrReplaceTempView(EXCLUDED_PERSONS)
            return backend._fetched(session, tables.sql, tables.params)

        return await backend._interruptible(self._session, compute)

    # -- with the ledger in the engine (`connectors.backends.spark_ledger`) -----------------

    @property
    def session(self) -> Any:
        return self._session

    @property
    def backend(self) -> SparkBackend:
        return self._backend

    def persons_relation(self) -> str:
        """The statement listing the cohort's persons (`tessera_cohort` of this session), as
        the ledger's statements read it."""
        return self._query.cohort_persons().sql

    async def cache(self) -> None:
        """The cohort computed into its cached view, nothing brought back: the ledger in the
        engine decides on it there."""
        create = self._query.create_cohort()
        _read_only(create.sql, cohort=True)
        backend = self._backend

        def cache(session: Any) -> None:
            session.sql(backend._placed(create.sql), args=_args(create.params)).collect()

        await backend._interruptible(self._session, cache)

    async def admitted_tables(self) -> list[Row]:
        """The tables without the persons of `tessera_excluded`, the view the ledger in the
        engine left in this session."""
        tables = self._query.cohort_tables()
        _read_only(tables.sql)
        backend = self._backend
        return await backend._interruptible(
            self._session, lambda s: backend._fetched(s, tables.sql, tables.params)
        )


class SparkBackend:
    dialect: Final = SPARK

    def __init__(
        self,
        *,
        connect: str | None = None,
        parquet: str | Path | None = None,
        threads: int = 2,
        layout: SchemaLayout | None = None,
        statement_timeout_s: float = 300,
        config: Mapping[str, str] | None = None,
    ) -> None:
        if (connect is None) == (parquet is None):
            raise ValueError("a Spark backend reads either a cluster (connect) or Parquet files")
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if parquet is not None and layout is not None:
            raise ValueError("Parquet tables are found by file name, not in schemas")
        self._connect = connect
        self._parquet = None if parquet is None else Path(parquet)
        self._threads = threads
        # A local session's tables are in a database of this backend's own: statements read
        # them there.
        self._database = f"{LOCAL_DATABASE}_{uuid.uuid4().hex[:8]}"
        self.layout = layout if parquet is None else SchemaLayout(self._database, self._database)
        self._timeout = statement_timeout_s
        self._config = dict(config or {})
        # Statements wait on the engine, not on Python: more workers than the node's threads,
        # so that a question's session and the vocabulary look-ups do not queue behind it.
        self._executor = ThreadPoolExecutor(max_workers=threads * 2, thread_name_prefix="spark")
        self._lock = threading.Lock()
        self._root: Any = None
        self._tags = itertools.count()
        self._closed = False
        self.transferred = Transferred()

    @property
    def local(self) -> bool:
        """A local session over Parquet files (`spark:///`), not a cluster."""
        return self._connect is None

    @property
    def database(self) -> str:
        """A local session's database of its own (the Parquet tables', and the ledger's)."""
        return self._database

    # -- sessions ----------------------------------------------------------------------------

    def _placed(self, sql: str) -> str:
        return sql if self.layout is None else qualify(sql, self.layout, SPARK)

    def _session(self) -> Any:
        """The backend's own session, opened on first use (a local session's JVM starts
        here, ~10 s)."""
        with self._lock:
            if self._closed:
                raise BackendFailed("the database connection is closed")
            if self._root is None:
                # pyspark raises RuntimeError too when Java cannot start.
                failures: tuple[type[Exception], ...] = (*_failures(), RuntimeError)
                try:
                    self._root = self._open()
                except BackendNotReady:
                    raise
                except failures as exc:
                    log.warning("cannot open the Spark session: %s", type(exc).__name__)
                    raise BackendNotReady("the database cannot be reached") from exc
            return self._root

    def _open(self) -> Any:
        from pyspark.sql import SparkSession

        _quiet()

        if self._connect is not None:
            builder = SparkSession.builder.remote(self._connect)
            for key, value in self._config.items():
                builder = builder.config(key, value)
            return builder.create()
        assert self._parquet is not None
        if not self._parquet.is_dir():
            raise BackendNotReady("the database's directory of Parquet tables does not exist")
        builder = (
            SparkSession.builder.master(f"local[{self._threads}]")
            .appName("tessera-connector")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", str(_SHUFFLE_PARTITIONS))
        )
        for key, value in self._config.items():
            builder = builder.config(key, value)
        session = _LOCAL.acquire(builder)
        try:
            session.sql(_create_database(self._database)).collect()
            for name, path in _parquet_tables(self._parquet):
                # Absolute: the catalog would take a relative path for one in its warehouse.
                session.catalog.createTable(
                    f"{self._database}.{name}", path=str(path.absolute()), source="parquet"
                )
        except BaseException:
            _LOCAL.release(session)
            raise
        return session

    def _question_session(self) -> Any:
        """A session of one question's own: its temporary views are nobody else's."""
        root = self._session()
        if self._connect is None:
            return root.newSession()
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.remote(self._connect)
        for key, value in self._config.items():
            builder = builder.config(key, value)
        return builder.create()

    def _release(self, session: Any) -> None:
        with contextlib.suppress(*_failures()):
            # Dropping a cached view uncaches it: the cohort's rows leave the executors.
            session.catalog.dropTempView(COHORT_TABLE)
            session.catalog.dropTempView(EXCLUDED_PERSONS)
            if self._connect is not None:
                session.stop()  # the cluster's session, not the client's process

    # -- worker threads ----------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise BackendFailed("the database connection is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except _failures() as exc:
            # The type is enough to triage; Spark's message may quote the statement.
            log.warning("database error: %s", type(exc).__name__)
            raise BackendFailed("the database failed to answer") from exc

    async def _interruptible(self, session: Any, work: Callable[[Any], T]) -> T:
        """`work(session)` on a worker thread, its jobs tagged: a cancellation or the
        statement timeout interrupts them."""
        tagged = _Tagged(session, local=self._connect is None)
        running = _Running(tagged, f"tessera-{uuid.uuid4().hex[:12]}-{next(self._tags)}")

        def run() -> T:
            if not running.start():
                raise _Cancelled
            tagged.add(running.tag)
            try:
                return work(session)
            finally:
                tagged.remove(running.tag)

        task = asyncio.ensure_future(self._call(run))
        try:
            # Shielded: a cancellation must reach the statement, not just stop the waiting.
            return await asyncio.wait_for(asyncio.shield(task), self._timeout)
        except TimeoutError:
            await _interrupted(running, task)
            raise BackendFailed(f"the database did not answer within {self._timeout:g} s") from None
        except asyncio.CancelledError:
            await _interrupted(running, task)
            raise

    def _fetched(self, session: Any, sql: str, params: Sequence[object]) -> list[Row]:
        """The rows of one statement (checked by the caller), counted as received."""
        table = session.sql(self._placed(sql), args=_args(params)).toArrow()
        self.transferred.received += table.nbytes
        return _rows(table)

    async def _query(self, session: Any, sql: str, params: tuple[object, ...]) -> list[Row]:
        _read_only(sql)
        return await self._interruptible(session, lambda s: self._fetched(s, sql, params))

    async def _run(self, sql: str, params: tuple[object, ...]) -> list[Row]:
        return await self._query(await self._call(self._session), sql, params)

    # -- Backend -----------------------------------------------------------------------------

    async def execute(self, statement: Statement) -> list[Row]:
        return await self._run(statement.sql, statement.params)

    @contextlib.asynccontextmanager
    async def cohort(self, query: CompiledQuery) -> AsyncIterator[CohortRun]:
        session = await self._call(self._question_session)
        try:
            yield _Cohort(self, session, query)
        finally:
            await asyncio.shield(asyncio.to_thread(self._release, session))

    async def _present(self) -> set[str]:
        """The tables there are: as `schema.table` in the layout's schemas, or by name (a
        local session's Parquet tables, or the current database's)."""
        session = await self._call(self._session)

        def listed(schema: str | None) -> list[str]:
            return [str(table.name) for table in session.catalog.listTables(schema)]

        if self._connect is None:
            return set(await self._call(listed, self._database))
        if self.layout is None:
            return set(await self._call(listed, None))
        present: set[str] = set()
        for schema in dict.fromkeys((self.layout.cdm, self.layout.vocabulary)):
            present |= {f"{schema}.{name}" for name in await self._call(listed, schema)}
        return present

    async def ping(self) -> None:
        layout = None if self._connect is None else self.layout
        await check_ready(self._run, self.dialect, layout, present=self._present)

    async def optout_register_version(self) -> str:
        return await register_version(self._run, self.dialect)

    async def data_release(self) -> str:
        return await data_release(self._run, self.dialect)

    async def close(self) -> None:
        with self._lock:
            self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        with self._lock:
            root, self._root = self._root, None
        if root is None:
            return
        if self._connect is not None:
            with contextlib.suppress(*_failures()):
                await asyncio.to_thread(root.stop)
            return

        def drop() -> None:
            with contextlib.suppress(*_failures()):
                root.sql(_drop_database(self._database)).collect()
            _LOCAL.release(root)

        await asyncio.to_thread(drop)


class _LocalSpark:
    """The process's local Spark (one JVM, one SparkContext), shared by the backends that read
    Parquet (one in a connector; several in tests), stopped when the last one closes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0

    def acquire(self, builder: Any) -> Any:
        with self._lock:
            session = builder.getOrCreate()
            session.sparkContext.setLogLevel("ERROR")
            self._users += 1
            return session

    def release(self, session: Any) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                with contextlib.suppress(*_failures()):
                    session.stop()


_LOCAL: Final = _LocalSpark()


def _create_database(name: str) -> str:
    return exp.Create(this=exp.to_table(name), kind="SCHEMA").sql(SPARK.sqlglot)


def _drop_database(name: str) -> str:
    return exp.Drop(tables=[exp.to_table(name)], kind="SCHEMA", exists=True, cascade=True).sql(
        SPARK.sqlglot
    )


def _parquet_tables(directory: Path) -> Iterator[tuple[str, Path]]:
    """Each table of a directory of Parquet tables: `name/` (a dataset) or `name.parquet`."""
    for path in sorted(directory.iterdir()):
        name = path.name.removesuffix(".parquet") if path.is_file() else path.name
        if _TABLE_NAME.match(name) and (path.is_dir() or path.suffix == ".parquet"):
            yield name, path
