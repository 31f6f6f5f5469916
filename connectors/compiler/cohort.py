"""Compiles a `CohortQuery` to one SQL statement computing every requested table.

Shape: CTE `cohort` (persons born by the reference year, not opted out, matching the
criteria, with their person index: `tessera_person`, the ledger's stable numbering; with ages
taken at the index event, its date too), optionally CTE `index_event` (each person's first
dating event, for the dimensions that read it when the cohort does not carry it), CTE
`cells` (each person's dimension values, as `connectors.compiler.dimensions` computes them),
then a single aggregation with GROUP BY GROUPING SETS, one set per table, told apart by
GROUPING(). Each cell comes with one column per measure asked, named for it
(`connectors.compiler.measures`: for PERSON_COUNT, its count of distinct person indexes).
The statement leaves out the persons the ledger no longer counts for this applicant: a bound
list of person indexes (empty as compiled; bound by `CompiledQuery.tables_statement`).
A second, lightweight statement lists the cohort's person indexes, all of them, for the
ledger to decide on.

The same work also comes as statements over a temporary table (`CompiledQuery.cohort_table`):
create it from the cohort, list its persons, delete those the ledger leaves out, compute the
tables from it. A backend that can use them computes the cohort (the costly part: the
criteria's semi-joins) once, not twice, and the ledger and the tables see the very same
persons.

Age is `year of the age date - year_of_birth`: an approximation (up to a year too old before
the birthday) because many OMOP sources only hold the year of birth. The age date is the
reference date, or each person's index event (`CohortQuery.age_basis`): then the cohort joins
each person's first index event date (derived table `age_date`) and age criteria compare that
age, not bounds on year_of_birth.

With an explicit index (`CohortQuery.index`), `age_date` holds each person's candidate index
dates instead (the earliest qualifying event per person, or every distinct date of one: a
UNION ALL of one branch per alternative event, each filtered by its concept set, visit type,
window and observation period), and every criterion is taken at the candidate joined:
relative criteria are EXISTS over the event table with the window's ends bound as days added
to `age_date.index_date`. With ALL, the cohort groups each person's satisfying candidates:
the earliest is their index date, which the cells read from the cohort.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlglot import exp

from connectors.compiler import names
from connectors.compiler.compiled import (
    GROUPING_COLUMN,
    CohortTable,
    CompiledQuery,
    ConceptSet,
    SqlStatement,
    TableLayout,
)
from connectors.compiler.dialect import DUCKDB, Dialect
from connectors.compiler.dimensions import DIMENSION_SQL, PersonColumns
from connectors.compiler.follow_up import (
    FIRST_OUTCOME,
    FOLLOWED_UNTIL,
    OBSERVED_END,
    FollowUp,
    covering_end,
    follow_up,
    joined,
    per_index,
)
from connectors.compiler.lexis import BIRTH_COLUMNS, pieces
from connectors.compiler.measures import (
    DAYS_AT_RISK,
    MEASURE_SQL,
    OUTCOME_EVENT,
    VALUE_SQUARES,
    VALUE_UNITS,
    measure_column,
)
from connectors.compiler.names import EventTable
from connectors.compiler.sql import Params, col, exists, renumbered, table, text
from connectors.errors import BadRequest
from schema.codes import AgeAt, Dimension, EventDomain, MeasureKind, Occurrence
from schema.lexis import splits
from schema.measures import asked
from schema.query import (
    Breakdown,
    CohortQuery,
    Criteria,
    DateWindow,
    DeathCriterion,
    EventCriterion,
    EventSpec,
    IndexEvent,
    MeasurementCriterion,
    NumericVariable,
    RelativeCriterion,
    RelativeWindow,
    Survival,
)
from schema.survival import Exit
from schema.variables import PerPerson, VariableSource

# CTE names and table aliases.
COHORT_CTE, INDEX_CTE, CELLS_CTE = "cohort", "index_event", "cells"
PERSON, COHORT, INDEX, EVENT, KEY, OBSERVED, DIED = "p", "c", "i", "e", "k", "op", "d"
VISIT, CANDIDATES = "v", "u"
AGE, INDEX_DATE, GROUPING_ID = "age", "index_date", GROUPING_COLUMN
AGE_DATE = "age_date"  # the derived table of index dates ages are taken at
VARIABLE, RAW, RANK = "variable", "raw_value", "value_rank"  # a measurement variable's table
VALUE_BIN = "value_bin"  # the cohort's column of each person's bin (`PersonColumns.value_bin`)
# A survival question's columns: days from the index date to the outcome and to the end of
# observation, and the FOLLOW_UP key they give (`PersonColumns.follow_up`).
OUTCOME_DAYS, END_DAYS, FOLLOW_UP = "outcome_days", "end_days", "follow_up"
OUTCOME_ON = "outcome_on"
FOLLOWED = "f"
# An explicitly indexed cohort wrapped to carry its variable, and the candidate dates its
# measurements are taken around.
VALUED, DATED = "w", "ix"
PERSON_INDEX = names.PERSON_INDEX_COLUMN


@dataclass(frozen=True, slots=True)
class ValueAtIndex:
    """A wrap of an explicitly indexed cohort (alias `w`) adding its variable's columns,
    read from `values` (alias `variable`, joined LEFT `on` the person and their index date)
    or from the cohort itself (age): the columns `_value_columns` makes. `wrap` puts a cohort
    under it, a copy each time."""

    columns: list[exp.Expr]
    values: exp.Select | None
    on: exp.Expr | None

    def wrap(self, cohort: exp.Select) -> exp.Select:
        select = exp.select(
            exp.Column(this=exp.Star(), table=exp.to_identifier(VALUED)),
            *(c.copy() for c in self.columns),
        ).from_(exp.Subquery(this=cohort, alias=exp.TableAlias(this=VALUED)), copy=False)
        if self.values is None or self.on is None:
            return select
        return select.join(
            exp.Subquery(this=self.values.copy(), alias=exp.TableAlias(this=VARIABLE)),
            on=self.on.copy(),
            join_type="LEFT",
            copy=False,
        )


class _CohortCompiler:
    def __init__(self, query: CohortQuery, dialect: Dialect) -> None:
        self.query = query
        self.dialect = dialect
        self.params = Params()
        self.reference_year = self.params.bind(query.reference_date.year)
        # The filter built for each top-level event criterion, reused (same placeholders) to
        # date the index event.
        self._filters: dict[int, tuple[EventTable, exp.Expr]] = {}
        self._ages_at_index = query.age_basis is AgeAt.INDEX_EVENT
        # Whether the cohort holds each person's index date (CTE `index_event` is then not
        # needed): an explicit index dates everyone, and ages at an implicit one join it.
        self._dates_cohort = query.index is not None or self._ages_at_index
        # An incidence rate's follow-up (`connectors.compiler.follow_up`), once the cohort is.
        self._follow_up: FollowUp | None = None
        self._follow_up_params: tuple[exp.Parameter, exp.Parameter] | None = None
        # A numeric variable at an explicit index (`_value_at_index`), once the cohort is; the
        # candidate index dates it reads, as the cohort reads them.
        self._valued: ValueAtIndex | None = None
        self._candidate_dates: exp.Select | None = None
        self._outcome_filter: list[exp.Expr] = []
        # Whether the cells read each person's follow-up in pieces by age and year
        # (`connectors.compiler.lexis`): the cohort then carries their date of birth.
        self._split = splits(query)

    def compile(self) -> CompiledQuery:
        dialect = self.dialect
        tables = [_node_table(t) for t in self.query.tables]
        dimensions = list(dict.fromkeys(d for t in tables for d in t))
        measures = asked(self.query)
        cohort = self._cohort()
        survival = self.query.survival
        # A survival question's intervals and maximum, bound before `excluded` (the last).
        self._follow_up_params = (
            None
            if survival is None
            else (self.params.bind(survival.interval_days), self.params.bind(survival.max_days))
        )
        self._outcome_filter = [] if survival is None else self._spec_filter(survival.outcome)
        # Bound last, after every value of the criteria (statements without it renumber):
        # nobody left out unless `CompiledQuery.tables_statement` says otherwise.
        excluded = self.params.bind([])
        # Every tree below is its own (built here, or copied from `cohort` before the statement
        # takes `cohort` itself) and printed once, so neither renumbering nor printing copies
        # it again: copies of these trees were half of the compile time.
        population, population_params = renumbered(_population(cohort))
        cohort_table = self._cohort_table(cohort, tables, dimensions, measures)
        counted = self._followed(
            cohort.where(dialect.not_in_long_list(col(PERSON_INDEX, KEY), excluded), copy=False)
        )
        statement = self._statement(counted, tables, dimensions, measures)
        # The result's columns, named by the statement's aliases (the cohort table's
        # statement has the same).
        columns = tuple(statement.named_selects)
        text = dialect.sql(statement)
        return CompiledQuery(
            sql=text,
            params=tuple(self.params.values),
            dialect=dialect,
            tables=tuple(tables),
            layouts=tuple(_layout(t, dimensions) for t in tables),
            columns=columns,
            measures=tuple((m, MEASURE_SQL[m].column) for m in measures),
            empty=tuple((m, MEASURE_SQL[m].empty) for m in measures),
            fingerprint=hashlib.sha256(f"{dialect.name}\n{text}".encode()).hexdigest()[:16],
            population_sql=dialect.sql(population),
            population_params=population_params,
            cohort_table=cohort_table,
            excluded_param=len(self.params.values) - 1,
        )

    def _followed(self, cohort: exp.Select) -> exp.Select:
        """`cohort` with each person's value at their index date, for a question with a
        variable and an explicit index, and their follow-up, for a question with an outcome."""
        if self._valued is not None:
            cohort = self._valued.wrap(cohort)
        return cohort if self._follow_up is None else self._follow_up.wrap(cohort)

    def _cohort_table(
        self,
        cohort: exp.Select,
        tables: Sequence[Breakdown],
        dimensions: Sequence[Dimension],
        measures: Sequence[MeasureKind],
    ) -> CohortTable | None:
        """The statements over a temporary table holding the cohort, where the dialect has
        temporary tables. Takes a copy of `cohort`."""
        dialect = self.dialect
        if dialect.temporary_table is None:
            return None
        create, create_params = renumbered(
            dialect.temporary_table(names.COHORT_TABLE, self._followed(cohort.copy()))
        )
        # The persons to leave out come as a relation the backend provides, not a bound list:
        # deleted from the table, or, where it cannot be deleted from, left out as it is read.
        from_table = exp.select("*").from_(exp.to_table(names.COHORT_TABLE))
        delete_sql: str | None = None
        if dialect.delete_listed is None:
            # NOT EXISTS, not NOT IN: Spark runs NOT IN as a null-aware anti-join, which it
            # can only broadcast, and a national cohort's persons left out (everyone, at the
            # cap) do not fit a driver; a plain anti-join is shuffled when it has to be.
            listed = (
                exp.select(exp.Literal.number(1))
                .from_(exp.to_table(names.EXCLUDED_PERSONS).as_("x"))
                .where(
                    exp.column(PERSON_INDEX, "x").eq(exp.column(PERSON_INDEX, names.COHORT_TABLE))
                )
            )
            from_table = from_table.where(exp.not_(exp.Exists(this=listed)), copy=False)
        else:
            delete_sql = dialect.sql(
                dialect.delete_listed(names.COHORT_TABLE, PERSON_INDEX, names.EXCLUDED_PERSONS)
            )
        over_table, tables_params = renumbered(
            self._statement(from_table, tables, dimensions, measures)
        )
        persons = exp.select(col(PERSON_INDEX, COHORT)).from_(table(names.COHORT_TABLE, COHORT))
        return CohortTable(
            create_sql=dialect.sql(create),
            create_params=create_params,
            persons_sql=dialect.sql(persons),
            delete_sql=delete_sql,
            tables_sql=dialect.sql(over_table),
            tables_params=tables_params,
        )

    def _statement(
        self,
        cohort: exp.Select,
        tables: Sequence[Breakdown],
        dimensions: Sequence[Dimension],
        measures: Sequence[MeasureKind],
    ) -> exp.Select:
        """Every table in one statement, over `cohort` (the CTE's body)."""
        statement = self._aggregate(tables, dimensions, measures).with_(
            COHORT_CTE, as_=cohort, copy=False
        )
        if _dated(dimensions) and not self._dates_cohort:
            statement = statement.with_(INDEX_CTE, as_=self._index_event(), copy=False)
        if dimensions:
            statement = statement.with_(CELLS_CTE, as_=self._cells(dimensions), copy=False)
        return statement

    # -- cohort ------------------------------------------------------------------------------

    def _cohort(self) -> exp.Select:
        optout = (
            exp.select("1")
            .from_(table(names.OPTOUT, "o"))
            .where(col("person_id", "o").eq(col("person_id", PERSON)))
        )
        conditions: list[exp.Expr] = [
            col("year_of_birth", PERSON) <= self.reference_year.copy(),
            exp.not_(exists(optout)),
            *self._criteria(self.query.criteria, top_level=True),
        ]
        columns = [
            col("person_id", PERSON),
            col("gender_concept_id", PERSON),
            exp.alias_(self._age(), AGE),
            col(PERSON_INDEX, KEY),
        ]
        if self._ages_at_index and self.query.index is None:
            # The implicit index date the cohort joins anyway: the dimensions dated by it read
            # it here rather than find each person's first event again (CTE `index_event`).
            # (An explicit index adds its own: `_indexed`.)
            columns.append(col(INDEX_DATE, AGE_DATE))
        if self._split:
            columns += [col(c, PERSON) for c in BIRTH_COLUMNS]
        variable = self.query.variable
        if variable is not None and self.query.index is None:
            columns += self._value_columns(variable, self._age())
        select = (
            exp.select(*columns)
            .from_(table(names.PERSON, PERSON), copy=False)
            # A person without an index (added after `prepare`) is counted nowhere: nobody
            # could keep track of what they have been counted in.
            .join(
                table(names.PERSON_INDEX, KEY),
                on=col("person_id", KEY).eq(col("person_id", PERSON)),
                join_type="INNER",
                copy=False,
            )
        )
        if self.query.index is not None:
            indexed = self._indexed(select, conditions)
            if variable is not None:
                # Each person's value at their index date, its values bound here: `_followed`
                # wraps the cohort in it (with ALL, the index date is known once grouped).
                self._valued = self._value_at_index(variable)
            if self.query.outcome is not None:
                # Each person's follow-up from their index date, its values bound here (before
                # the persons left out): `_followed` wraps the cohort in it.
                self._follow_up = follow_up(
                    self.query.outcome,
                    self._shifted,
                    self._spec_filter,
                    self.dialect.days_between,
                )
            return indexed
        if self.query.age_basis is AgeAt.INDEX_EVENT:
            # Each person's index date, joined: only persons who have the index event, as the
            # criteria require anyway.
            select = select.join(
                exp.Subquery(this=self._index_dates(), alias=exp.TableAlias(this=AGE_DATE)),
                on=col("person_id", AGE_DATE).eq(col("person_id", PERSON)),
                join_type="INNER",
                copy=False,
            )
        if variable is not None and variable.source is VariableSource.MEASUREMENT:
            # Each person's one value (or none: a LEFT JOIN keeps them in the cohort).
            select = select.join(
                exp.Subquery(this=self._measured(variable), alias=exp.TableAlias(this=VARIABLE)),
                on=col("person_id", VARIABLE).eq(col("person_id", PERSON)),
                join_type="LEFT",
                copy=False,
            )
        return select.where(exp.and_(*conditions, copy=False), copy=False)

    # -- the numeric variable ----------------------------------------------------------------

    def _value_columns(self, variable: NumericVariable, age: exp.Expr) -> list[exp.Expr]:
        """The cohort's columns of the variable (its bin, its units and squares), a person's
        age being `age`."""
        columns: list[exp.Expr] = []
        if variable.bin_width is not None:
            columns.append(exp.alias_(self._bin(variable, age), VALUE_BIN))
        units = self._units(variable, age)
        offset = exp.cast(
            self.params.bind(variable.clipping.square_offset), exp.DataType.Type.BIGINT
        )
        columns.append(exp.alias_(units, VALUE_UNITS))
        columns.append(
            exp.alias_(
                exp.Sub(
                    this=exp.Mul(this=units.copy(), expression=units.copy()), expression=offset
                ),
                VALUE_SQUARES,
            )
        )
        return columns

    def _value_at_index(self, variable: NumericVariable) -> ValueAtIndex:
        """The wrap giving each person of an explicitly indexed cohort their value: their age
        (the cohort's, at its age date), or their measurement's, in `index_window` around
        their index date when it has one (from each candidate date's measurements, joined on
        the date the cohort chose), else as without an index."""
        age = col(AGE, VALUED)
        if variable.source is VariableSource.AGE:
            return ValueAtIndex(columns=self._value_columns(variable, age), values=None, on=None)
        dated = variable.index_window is not None
        values = self._measured(variable, self._candidate_dates if dated else None)
        on: exp.Expr = col("person_id", VARIABLE).eq(col("person_id", VALUED))
        if dated:
            on = exp.and_(on, col(INDEX_DATE, VARIABLE).eq(col(INDEX_DATE, VALUED)))
        return ValueAtIndex(columns=self._value_columns(variable, age), values=values, on=on)

    def _units(self, variable: NumericVariable, age: exp.Expr) -> exp.Expr:
        """The person's value as `schema.variables` counts it: clipped to the bounds, in whole
        units of the resolution (rounded half up), less the bounds' centre; NULL without a
        value. Integer arithmetic from the rounding on: the sums are exact."""
        clipping = variable.clipping
        if variable.source is VariableSource.AGE:
            whole: exp.Expr = age.copy()  # whole years already (resolution 1)
        elif variable.per_person is PerPerson.MEAN:
            # The mean of whole units (`_measured`), rounded half up: a mean of integers is a
            # half-integer exactly or lies at least 1/(2 count) from one, so the rounding
            # does not depend on how the database divides.
            whole = _half_up(col(RAW, VARIABLE))
        else:
            whole = self._whole_units(col(RAW, VARIABLE), clipping.decimals)
        low = exp.cast(self.params.bind(clipping.lo), exp.DataType.Type.BIGINT)
        high = exp.cast(self.params.bind(clipping.hi), exp.DataType.Type.BIGINT)
        centre = exp.cast(self.params.bind(clipping.centre), exp.DataType.Type.BIGINT)
        clipped = exp.func("LEAST", exp.func("GREATEST", whole.copy(), low), high)
        # GREATEST and LEAST skip NULLs (DuckDB and PostgreSQL alike): a person without a
        # value would get a bound as theirs.
        valued = exp.Case().when(whole.is_(exp.null()).not_(), clipped)
        return exp.paren(exp.Sub(this=valued, expression=centre))

    def _bin(self, variable: NumericVariable, age: exp.Expr) -> exp.Expr:
        """The cell key of the person's bin: the lower edge of the bin their clipped value
        falls in (the last bin holds the upper bound), in the variable's unit with its
        decimals, as `schema.variables.Clipping.edge` spells it; NULL without a value."""
        clipping = variable.clipping
        width = exp.cast(self.params.bind(variable.bin_units), exp.DataType.Type.BIGINT)
        low = exp.cast(self.params.bind(clipping.lo), exp.DataType.Type.BIGINT)
        last = exp.cast(self.params.bind(variable.bin_edges()[-1]), exp.DataType.Type.BIGINT)
        centre = exp.cast(self.params.bind(clipping.centre), exp.DataType.Type.BIGINT)
        # The clipped value in units from the lower bound, less its remainder by the width.
        offset = exp.paren(
            exp.Sub(
                this=exp.Add(this=self._units(variable, age), expression=centre), expression=low
            )
        )
        floor = exp.Sub(
            this=offset, expression=exp.paren(exp.Mod(this=offset.copy(), expression=width))
        )
        edge = exp.func("LEAST", exp.Add(this=low.copy(), expression=exp.paren(floor)), last)
        key = self._edge_key(edge, clipping.decimals)
        # LEAST skips NULLs: a person without a value would get the last bin.
        valued = exp.paren(self._units(variable, age)).is_(exp.null()).not_()
        return exp.Case().when(valued, key)

    @staticmethod
    def _edge_key(edge: exp.Expr, decimals: int) -> exp.Expr:
        if decimals == 0:
            return text(edge)
        scale = exp.Literal.number(10**decimals)
        whole = exp.cast(
            exp.Div(
                this=exp.paren(
                    exp.Sub(
                        this=edge.copy(),
                        expression=exp.paren(exp.Mod(this=edge.copy(), expression=scale.copy())),
                    )
                ),
                expression=scale.copy(),
            ),
            exp.DataType.Type.BIGINT,
        )
        fraction = exp.paren(exp.Mod(this=edge.copy(), expression=scale))
        # One decimal (every registered resolution is 1 or 0.1: `schema.variables`).
        return exp.DPipe(
            this=exp.DPipe(this=text(whole), expression=exp.Literal.string(".")),
            expression=text(fraction),
        )

    def _whole_units(self, value: exp.Expr, decimals: int) -> exp.Expr:
        """A measured value in whole units of 10**-decimals, rounded half up."""
        scale = exp.cast(self.params.bind(float(10**decimals)), exp.DataType.Type.DOUBLE)
        return _half_up(exp.Mul(this=exp.cast(value, exp.DataType.Type.DOUBLE), expression=scale))

    def _measured(
        self, variable: NumericVariable, candidates: exp.Select | None = None
    ) -> exp.Select:
        """Each person's value of a measurement variable: their first, last or mean
        measurement of the code in the window (the first and last by date, then by
        measurement id, so that one value is chosen whatever the database's order). With
        `candidates` (rows `(person_id, index_date)`), one value per person and candidate
        date, from the measurements in the variable's `index_window` around it."""
        assert variable.code is not None  # the query model requires it for a measurement
        criterion = MeasurementCriterion(
            vocabulary=variable.code.vocabulary,
            code=variable.code.code,
            descendants=variable.code.descendants,
            window=variable.window,
        )
        measurements = names.MEASUREMENTS
        assert measurements.value is not None
        value = col(measurements.value, EVENT)
        event_filter = exp.and_(
            self._event_filter(measurements, criterion), value.is_(exp.null()).not_()
        )
        person = col("person_id", EVENT)
        keys: list[exp.Expr] = [person]
        source = exp.select().from_(table(measurements.name, EVENT), copy=False)
        window = variable.index_window
        if candidates is not None and window is not None:
            date = col(measurements.date, EVENT)
            index_date = col(INDEX_DATE, DATED)
            source = source.join(
                exp.Subquery(this=candidates.copy(), alias=exp.TableAlias(this=DATED)),
                on=col("person_id", DATED).eq(person.copy()),
                join_type="INNER",
                copy=False,
            )
            event_filter = exp.and_(
                event_filter,
                date >= self._shifted(index_date, window.start_days),
                date.copy() <= self._shifted(index_date, window.end_days),
            )
            keys.append(index_date.copy())
        if variable.per_person is PerPerson.MEAN:
            # The mean of the person's values in whole units (rounded by `_units`).
            units = self._whole_units(value.copy(), variable.clipping.decimals)
            return (
                source.select(*keys, exp.alias_(exp.func("AVG", units), RAW), copy=False)
                .where(event_filter, copy=False)
                .group_by(*(k.copy() for k in keys), copy=False)
            )
        descending = variable.per_person is PerPerson.LAST
        order = exp.Order(
            expressions=[
                exp.Ordered(this=col(measurements.date, EVENT), desc=descending),
                exp.Ordered(this=col("measurement_id", EVENT), desc=descending),
            ]
        )
        rank = exp.Window(this=exp.RowNumber(), partition_by=[k.copy() for k in keys], order=order)
        ranked = source.select(
            *(k.copy() for k in keys),
            exp.alias_(value.copy(), RAW),
            exp.alias_(rank, RANK),
            copy=False,
        ).where(event_filter, copy=False)
        chosen = [exp.column(k.name) for k in keys]
        return (
            exp.select(*chosen, exp.column(RAW))
            .from_(exp.Subquery(this=ranked, alias=exp.TableAlias(this="ranked")), copy=False)
            .where(exp.column(RANK).eq(exp.Literal.number(1)), copy=False)
        )

    def measured(self, variable: NumericVariable, window: RelativeWindow) -> SqlStatement:
        """`compile_measured`'s statement."""
        assert variable.code is not None  # the query model requires it for a measurement
        assert self.query.index is not None  # a window relative to the index needs one
        criterion = MeasurementCriterion(
            vocabulary=variable.code.vocabulary,
            code=variable.code.code,
            descendants=variable.code.descendants,
        )
        measurements = names.MEASUREMENTS
        assert measurements.value is not None
        value = col(measurements.value, EVENT)
        date = col(measurements.date, EVENT)
        index_date = col(INDEX_DATE, COHORT)
        units = self._whole_units(value.copy(), variable.clipping.decimals)
        person = col(PERSON_INDEX, COHORT)
        joined = exp.and_(
            col("person_id", EVENT).eq(col("person_id", COHORT)),
            self._event_filter(measurements, criterion),
            value.is_(exp.null()).not_(),
            date >= self._shifted(index_date, window.start_days),
            date.copy() <= self._shifted(index_date, window.end_days),
        )
        events = (
            exp.select()
            .from_(table(COHORT_CTE, COHORT), copy=False)
            .join(table(measurements.name, EVENT), on=joined, join_type="INNER", copy=False)
        )
        if variable.per_person is PerPerson.MEAN:
            select = events.select(
                person, exp.alias_(exp.func("AVG", units), RAW), copy=False
            ).group_by(person.copy(), copy=False)
        else:
            descending = variable.per_person is PerPerson.LAST
            order = exp.Order(
                expressions=[
                    exp.Ordered(this=date.copy(), desc=descending),
                    exp.Ordered(this=col("measurement_id", EVENT), desc=descending),
                ]
            )
            rank = exp.Window(this=exp.RowNumber(), partition_by=[person.copy()], order=order)
            ranked = events.select(
                exp.alias_(person, PERSON_INDEX),
                exp.alias_(units, RAW),
                exp.alias_(rank, RANK),
                copy=False,
            )
            select = (
                exp.select(exp.column(PERSON_INDEX), exp.column(RAW))
                .from_(exp.Subquery(this=ranked, alias=exp.TableAlias(this="ranked")), copy=False)
                .where(exp.column(RANK).eq(exp.Literal.number(1)), copy=False)
            )
        select = select.with_(COHORT_CTE, as_=self._cohort(), copy=False)
        statement, indexes = renumbered(select)
        values = self.params.values
        return SqlStatement(self.dialect.sql(statement), tuple(values[i] for i in indexes))

    def _indexed(self, select: exp.Select, conditions: list[exp.Expr]) -> exp.Select:
        """The cohort of a question with an explicit index: each person joined to each of
        their candidate index dates (derived table `age_date`), the criteria taken at each
        candidate, and (with ALL, where a person has several) the persons grouped: their index
        date is the earliest candidate that satisfies the criteria, their age the age at it
        (or at the reference date)."""
        index = self.query.index
        assert index is not None
        candidates = self._candidates(index)
        self._candidate_dates = candidates.copy()
        select = select.join(
            exp.Subquery(this=candidates, alias=exp.TableAlias(this=AGE_DATE)),
            on=col("person_id", AGE_DATE).eq(col("person_id", PERSON)),
            join_type="INNER",
            copy=False,
        )
        select = select.where(exp.and_(*conditions, copy=False), copy=False)
        if index.occurrence is Occurrence.FIRST:
            # One candidate per person: nothing to group.
            return select.select(col(INDEX_DATE, AGE_DATE), copy=False)
        # The earliest satisfying candidate: its age is the least (ages grow with the date).
        select.expressions[2] = exp.alias_(
            exp.func("MIN", select.expressions[2].this), AGE, copy=False
        )
        first = exp.func("MIN", col(INDEX_DATE, AGE_DATE))
        born = BIRTH_COLUMNS if self._split else BIRTH_COLUMNS[:1]
        return select.select(exp.alias_(first, INDEX_DATE), copy=False).group_by(
            col("person_id", PERSON),
            col("gender_concept_id", PERSON),
            *(col(c, PERSON) for c in born),
            col(PERSON_INDEX, KEY),
            copy=False,
        )

    def _candidates(self, index: IndexEvent) -> exp.Select:
        """Each person's candidate index dates, rows `(person_id, index_date)`: their earliest
        qualifying event (FIRST), or every distinct date of one (ALL)."""
        branches = [self._qualifying(spec, index) for spec in index.events]
        if len(branches) == 1:
            events, alias = branches[0], EVENT
            date: exp.Expr = col(self._date_column(index.events[0]), EVENT)
        else:
            union: exp.Query = branches[0]
            for branch in branches[1:]:
                union = exp.union(union, branch, distinct=False, copy=False)
            events = exp.select(col("person_id", CANDIDATES), col(INDEX_DATE, CANDIDATES)).from_(
                exp.Subquery(this=union, alias=exp.TableAlias(this=CANDIDATES)), copy=False
            )
            alias, date = CANDIDATES, col(INDEX_DATE, CANDIDATES)
        person = col("person_id", alias)
        if index.occurrence is Occurrence.FIRST:
            events.set("expressions", [person, exp.alias_(exp.func("MIN", date), INDEX_DATE)])
            return events.group_by(person.copy(), copy=False)
        events.set("expressions", [person, exp.alias_(date, INDEX_DATE)])
        return events.distinct(copy=False)

    def _qualifying(self, spec: EventSpec, index: IndexEvent) -> exp.Select:
        """The events of `spec` that qualify as an index: in the index's window, and in an
        observation period long enough before and after them."""
        source = names.EVENT_TABLES[spec.domain]
        date = col(source.date, EVENT)
        parts = [*self._spec_filter(spec), *self._within(date, index.window)]
        prior, post = index.prior_observation_days, index.post_observation_days
        if prior is not None or post is not None:
            parts.append(exists(self._observed_around(date, prior or 0, post or 0)))
        select = exp.select(col("person_id", EVENT), exp.alias_(date.copy(), INDEX_DATE)).from_(
            table(source.name, EVENT), copy=False
        )
        return select.where(exp.and_(*parts, copy=False), copy=False) if parts else select

    @staticmethod
    def _date_column(spec: EventSpec) -> str:
        return names.EVENT_TABLES[spec.domain].date

    def _observed_around(self, date: exp.Expr, prior: int, post: int) -> exp.Select:
        """The observation period of the event at `date` that began at least `prior` days
        before it and ends at least `post` days after it."""
        covering = exp.and_(
            col("person_id", OBSERVED).eq(col("person_id", EVENT)),
            col("observation_period_start_date", OBSERVED) <= self._shifted(date, -prior),
            col("observation_period_end_date", OBSERVED) >= self._shifted(date, post),
            copy=False,
        )
        return (
            exp.select("1")
            .from_(table(names.OBSERVATION_PERIOD, OBSERVED), copy=False)
            .where(covering, copy=False)
        )

    def _shifted(self, date: exp.Expr, days: int) -> exp.Expr:
        """`date` plus `days` (bound; typed, or PostgreSQL would take the parameter added to
        a date for a date or an interval)."""
        return exp.Add(
            this=date.copy(), expression=exp.cast(self.params.bind(days), exp.DataType.Type.INT)
        )

    def _spec_filter(self, spec: EventSpec) -> list[exp.Expr]:
        """Whether an event (alias `e`) of `spec`'s domain is one of `spec`'s, as conditions
        that must all hold (none: every event of the domain is)."""
        source = names.EVENT_TABLES[spec.domain]
        parts: list[exp.Expr] = []
        if spec.codes:
            include = [self.params.bind(ConceptSet.of(c)) for c in spec.codes]
            exclude = [self.params.bind(ConceptSet.of(c)) for c in spec.excluded]
            parts.append(
                exp.paren(
                    exp.or_(
                        self._in_set(col(source.concept, EVENT), include, exclude),
                        self._in_set(col(source.source_concept, EVENT), include, exclude),
                    )
                )
            )
        if spec.visit is not None:
            ids = self.params.bind(list(names.VISIT_CONCEPT_IDS[spec.visit]))
            if spec.domain is EventDomain.VISIT:
                parts.append(self.dialect.any_of(col(names.VISIT_CONCEPT, EVENT), ids))
            else:
                parts.append(exists(self._visit(ids)))
        parts += self._within(col(source.date, EVENT), spec.window)
        if spec.value is not None:
            assert source.value is not None  # the model allows values on measurements only
            value = col(source.value, EVENT)
            if spec.value.min is not None:
                parts.append(value >= self.params.bind(spec.value.min))
            if spec.value.max is not None:
                parts.append(value.copy() <= self.params.bind(spec.value.max))
        return parts

    def _in_set(
        self, column: exp.Expr, include: Sequence[exp.Expr], exclude: Sequence[exp.Expr]
    ) -> exp.Expr:
        """`column` is a concept of the set: one of `include`'s, none of `exclude`'s."""
        included = exp.or_(*(self.dialect.any_of(column.copy(), i.copy()) for i in include))
        if not exclude:
            return exp.paren(included) if len(include) > 1 else included
        excluded = exp.or_(*(self.dialect.any_of(column.copy(), x.copy()) for x in exclude))
        return exp.paren(exp.and_(exp.paren(included), exp.not_(exp.paren(excluded))))

    def _visit(self, ids: exp.Expr) -> exp.Select:
        """The visit of type `ids` the event (alias `e`) belongs to."""
        at = exp.and_(
            col(names.VISIT_OCCURRENCE_ID, VISIT).eq(col(names.VISIT_OCCURRENCE_ID, EVENT)),
            self.dialect.any_of(col(names.VISIT_CONCEPT, VISIT), ids),
            copy=False,
        )
        return (
            exp.select("1")
            .from_(table(names.VISIT_OCCURRENCE, VISIT), copy=False)
            .where(at, copy=False)
        )

    def _relative(self, criterion: RelativeCriterion) -> exp.Expr:
        """Whether the person has the criterion's events in its window around the candidate
        index date (`age_date.index_date`): EXISTS the one group of them HAVING a count in
        range; NOT that for an exclusion."""
        source = names.EVENT_TABLES[criterion.event.domain]
        date = col(source.date, EVENT)
        index_date = col(INDEX_DATE, AGE_DATE)
        window = criterion.window
        parts = [
            col("person_id", EVENT).eq(col("person_id", PERSON)),
            *self._spec_filter(criterion.event),
            date >= self._shifted(index_date, window.start_days),
            date.copy() <= self._shifted(index_date, window.end_days),
        ]
        events = (
            exp.select("1")
            .from_(table(source.name, EVENT), copy=False)
            .where(exp.and_(*parts, copy=False), copy=False)
        )
        if criterion.at_least > 1 or criterion.at_most is not None:
            # With HAVING, the one group exists even without events (COUNT(*) = 0): the lower
            # bound is always there.
            count = exp.Count(this=exp.Star())
            counts: list[exp.Expr] = [count >= self.params.bind(criterion.at_least)]
            if criterion.at_most is not None:
                counts.append(count.copy() <= self.params.bind(criterion.at_most))
            events = events.having(exp.and_(*counts, copy=False), copy=False)
        occurs = exists(events)
        return exp.not_(occurs) if criterion.exclude else occurs

    def _age(self) -> exp.Expr:
        """A person's age in whole years at the question's age date (`CohortQuery.age_basis`):
        the year of that date minus the year of birth."""
        if self.query.age_basis is AgeAt.INDEX_EVENT:
            year: exp.Expr = exp.Extract(this=exp.var("YEAR"), expression=col(INDEX_DATE, AGE_DATE))
        else:
            year = self.reference_year.copy()
        return exp.Sub(this=year, expression=col("year_of_birth", PERSON))

    def _index_dates(self) -> exp.Select:
        """Each person's first index event (within its window): the date ages are taken at."""
        index = self.query.criteria.index_event()
        assert index is not None  # the query model refuses INDEX_EVENT without one
        event_table, event_filter = self._filters[id(index)]
        return (
            exp.select(
                col("person_id", EVENT),
                exp.alias_(exp.func("MIN", col(event_table.date, EVENT)), INDEX_DATE),
            )
            .from_(table(event_table.name, EVENT), copy=False)
            .where(event_filter.copy(), copy=False)
            .group_by(col("person_id", EVENT), copy=False)
        )

    def _criteria(self, criteria: Criteria, *, top_level: bool = False) -> list[exp.Expr]:
        parts: list[exp.Expr] = []
        if criteria.sex is not None:
            sex = self.params.bind(names.GENDER_CONCEPT_IDS[criteria.sex])
            parts.append(col("gender_concept_id", PERSON).eq(sex))
        if criteria.age is not None and self.query.age_basis is AgeAt.INDEX_EVENT:
            if criteria.age.max is not None:
                parts.append(self._age() <= self.params.bind(criteria.age.max))
            if criteria.age.min is not None:
                parts.append(self._age() >= self.params.bind(criteria.age.min))
        elif criteria.age is not None:
            year = self.query.reference_date.year
            # Bounds on year_of_birth rather than on an age expression keep the predicate
            # usable by an index on PostgreSQL.
            if criteria.age.max is not None:
                oldest = self.params.bind(year - criteria.age.max)
                parts.append(col("year_of_birth", PERSON) >= oldest)
            if criteria.age.min is not None:
                youngest = self.params.bind(year - criteria.age.min)
                parts.append(col("year_of_birth", PERSON) <= youngest)
        if criteria.prior_observation_days is not None:
            parts.append(exists(self._observed(criteria.prior_observation_days)))
        events: Iterable[tuple[EventTable, Sequence[EventCriterion]]] = (
            (names.CONDITIONS, criteria.conditions),
            (names.DRUGS, criteria.drugs),
            (names.MEASUREMENTS, criteria.measurements),
        )
        # With ages at the index event, the cohort joins each person's index date, which
        # requires the index criterion: its own semi-join would be the same work again.
        implicit = top_level and self._ages_at_index and self.query.index is None
        joined = self.query.criteria.index_event() if implicit else None
        for event_table, criteria_list in events:
            for criterion in criteria_list:
                event_filter = self._event_filter(event_table, criterion)
                if top_level:
                    self._filters[id(criterion)] = (event_table, event_filter)
                if criterion is not joined or criterion.at_least > 1:
                    parts.append(self._occurs(event_table, event_filter, criterion))
        if criteria.death is not None:
            died = exists(self._death(criteria.death))
            parts.append(exp.not_(died) if criteria.death.exclude else died)
        parts += [self._relative(r) for r in criteria.relative]
        if criteria.any_of:
            groups = [exp.and_(*(self._criteria(g) or [exp.true()])) for g in criteria.any_of]
            parts.append(exp.paren(exp.or_(*groups)))
        return parts

    def _observed(self, days: int) -> exp.Select:
        """The person's observation period covering their age date that started at least
        `days` before it: at the index event, from each person's index date; at the reference
        date, from dates bound as they are."""
        start = col("observation_period_start_date", OBSERVED)
        end = col("observation_period_end_date", OBSERVED)
        if self._ages_at_index:
            date: exp.Expr = col(INDEX_DATE, AGE_DATE)
            # Typed: PostgreSQL would otherwise take a parameter subtracted from a date for
            # a date.
            earliest: exp.Expr = exp.Sub(
                this=date.copy(),
                expression=exp.cast(self.params.bind(days), exp.DataType.Type.INT),
            )
        else:
            reference_date = self.query.reference_date
            date = self.params.bind(reference_date)
            earliest = self.params.bind(reference_date - dt.timedelta(days=days))
        covering = exp.and_(
            col("person_id", OBSERVED).eq(col("person_id", PERSON)),
            start <= earliest,
            end >= date,
            copy=False,
        )
        return (
            exp.select("1")
            .from_(table(names.OBSERVATION_PERIOD, OBSERVED), copy=False)
            .where(covering, copy=False)
        )

    def _death(self, death: DeathCriterion) -> exp.Select:
        """The person's death record within the window."""
        parts: list[exp.Expr] = [col("person_id", DIED).eq(col("person_id", PERSON))]
        parts += self._within(col("death_date", DIED), death.window)
        return (
            exp.select("1")
            .from_(table(names.DEATH, DIED), copy=False)
            .where(exp.and_(*parts, copy=False), copy=False)
        )

    def _within(self, date: exp.Expr, window: DateWindow | None) -> list[exp.Expr]:
        """`date` within `window`, its ends bound."""
        parts: list[exp.Expr] = []
        if window is not None:
            if window.start is not None:
                parts.append(date.copy() >= self.params.bind(window.start))
            if window.end is not None:
                parts.append(date.copy() <= self.params.bind(window.end))
        return parts

    def _event_filter(self, event_table: EventTable, criterion: EventCriterion) -> exp.Expr:
        ids = self.params.bind(ConceptSet.of(criterion))
        parts: list[exp.Expr] = [
            exp.paren(
                exp.or_(
                    self.dialect.any_of(col(event_table.concept, EVENT), ids),
                    self.dialect.any_of(col(event_table.source_concept, EVENT), ids),
                )
            )
        ]
        parts += self._within(col(event_table.date, EVENT), criterion.window)
        if isinstance(criterion, MeasurementCriterion) and criterion.value is not None:
            assert event_table.value is not None
            value = col(event_table.value, EVENT)
            if criterion.value.min is not None:
                parts.append(value >= self.params.bind(criterion.value.min))
            if criterion.value.max is not None:
                parts.append(value.copy() <= self.params.bind(criterion.value.max))
        return exp.and_(*parts)

    def _occurs(
        self, event_table: EventTable, event_filter: exp.Expr, criterion: EventCriterion
    ) -> exp.Expr:
        """Whether the person has the criterion's events: EXISTS an event, or, for at least N,
        EXISTS the one group of their events HAVING COUNT(*) >= N; NOT that for an
        exclusion."""
        events = (
            exp.select("1")
            .from_(table(event_table.name, EVENT), copy=False)
            .where(col("person_id", EVENT).eq(col("person_id", PERSON)), copy=False)
            .where(event_filter.copy(), copy=False)
        )
        if criterion.at_least > 1:
            counted = exp.Count(this=exp.Star()) >= self.params.bind(criterion.at_least)
            events = events.having(counted, copy=False)
        occurs = exists(events)
        return exp.not_(occurs) if criterion.exclude else occurs

    # -- dimensions --------------------------------------------------------------------------

    def _index_event(self) -> exp.Select:
        """Each cohort person's first event dating them: the criteria's index event within its
        window, else their first observation period."""
        in_cohort = exp.select(col("person_id", COHORT)).from_(table(COHORT_CTE, COHORT))
        index = self.query.criteria.index_event()
        if index is None:
            source, alias, date = names.OBSERVATION_PERIOD, "o", "observation_period_start_date"
            event_filter: exp.Expr | None = None
        else:
            event_table, event_filter = self._filters[id(index)]
            source, alias, date = event_table.name, EVENT, event_table.date
        select = (
            exp.select(
                col("person_id", alias), exp.alias_(exp.func("MIN", col(date, alias)), INDEX_DATE)
            )
            .from_(table(source, alias), copy=False)
            .where(col("person_id", alias).isin(query=in_cohort, copy=False), copy=False)
            .group_by(col("person_id", alias), copy=False)
        )
        if event_filter is not None:
            select = select.where(event_filter.copy(), copy=False)
        return select

    def _cells(self, dimensions: Sequence[Dimension]) -> exp.Select:
        select = exp.select(col(PERSON_INDEX, COHORT)).from_(table(COHORT_CTE, COHORT))
        dated = _dated(dimensions)
        # The index date: the cohort's own column when it has one, else CTE `index_event`,
        # joined.
        joined = dated and not self._dates_cohort
        person = PersonColumns(
            gender_concept_id=col("gender_concept_id", COHORT),
            age=col(AGE, COHORT),
            index_date=col(INDEX_DATE, INDEX if joined else COHORT),
            value_bin=col(VALUE_BIN, COHORT),
            follow_up=col(FOLLOW_UP, COHORT),
        )
        survival = self.query.survival
        if survival is not None:
            # Each person's exit from follow-up, computed once, read as a cohort column.
            select = exp.select(col(PERSON_INDEX, COHORT)).from_(
                exp.Subquery(
                    this=self._survival_exits(survival), alias=exp.TableAlias(this=COHORT)
                ),
                copy=False,
            )
        elif self._split:
            # Each person's follow-up in pieces by age and year, each read as a person is.
            select = exp.select(col(PERSON_INDEX, COHORT)).from_(
                exp.Subquery(
                    this=pieces(COHORT_CTE, self._carried(), self.dialect, self._once()),
                    alias=exp.TableAlias(this=COHORT),
                ),
                copy=False,
            )
        for dimension in dimensions:
            entry = DIMENSION_SQL[dimension]
            value = exp.alias_(entry.value(person), entry.column, copy=False)
            select = select.select(value, copy=False)
        if self.query.variable is not None:
            select = select.select(col(VALUE_UNITS, COHORT), col(VALUE_SQUARES, COHORT), copy=False)
        if self.query.outcome is not None:
            select = select.select(
                col(OUTCOME_EVENT, COHORT), col(DAYS_AT_RISK, COHORT), copy=False
            )
        if joined:
            select = select.join(
                table(INDEX_CTE, INDEX),
                on=col("person_id", INDEX).eq(col("person_id", COHORT)),
                join_type="LEFT",
                copy=False,
            )
        return select

    def _carried(self) -> list[str]:
        """The cohort's columns the cells read that a piece of follow-up keeps as they are."""
        carried = [PERSON_INDEX, "gender_concept_id"]
        variable = self.query.variable
        if variable is not None and variable.bin_width is not None:
            carried.append(VALUE_BIN)
        return carried

    def _once(self) -> list[str]:
        """The cohort's columns only the piece of a person's first day at risk keeps: their
        value's, summed once."""
        return [] if self.query.variable is None else [VALUE_UNITS, VALUE_SQUARES]

    # -- survival ----------------------------------------------------------------------------

    def _survival_exits(self, survival: Survival) -> exp.Select:
        """The cohort with each person's FOLLOW_UP key (`schema.survival`): from the days to
        their first outcome event on or after the index date and to the end of the observation
        period holding it (none: censored on the index date), the interval they left follow-up
        in and how (an outcome on the last day observed is an event), or at risk at the
        maximum."""
        spec = survival.outcome
        source = names.EVENT_TABLES[spec.domain]
        index_date = col(INDEX_DATE, COHORT)
        first = per_index(
            table(COHORT_CTE, COHORT),
            COHORT,
            table(source.name, EVENT),
            exp.and_(
                col("person_id", EVENT).eq(col("person_id", COHORT)),
                col(source.date, EVENT) >= index_date.copy(),
                *(part.copy() for part in self._outcome_filter),
                copy=False,
            ),
            exp.func("MIN", col(source.date, EVENT)),
            OUTCOME_ON,
        )
        days = exp.select(
            exp.Column(this=exp.Star(), table=exp.to_identifier(COHORT)),
            exp.alias_(
                self.dialect.days_between(col(OUTCOME_ON, FIRST_OUTCOME), index_date.copy()),
                OUTCOME_DAYS,
            ),
            exp.alias_(
                self.dialect.days_between(col(FOLLOWED_UNTIL, OBSERVED_END), index_date.copy()),
                END_DAYS,
            ),
        ).from_(table(COHORT_CTE, COHORT), copy=False)
        days = joined(days, first, FIRST_OUTCOME, COHORT, dated=True)
        ended = covering_end(table(COHORT_CTE, COHORT), COHORT)
        days = joined(days, ended, OBSERVED_END, COHORT, dated=True)
        return exp.select(
            exp.Column(this=exp.Star(), table=exp.to_identifier(FOLLOWED)),
            exp.alias_(self._exit_key(survival), FOLLOW_UP),
        ).from_(exp.Subquery(this=days, alias=exp.TableAlias(this=FOLLOWED)), copy=False)

    def _exit_key(self, survival: Survival) -> exp.Expr:
        assert self._follow_up_params is not None  # bound by `compile` for survival
        width_param, top_param = self._follow_up_params
        width = exp.cast(width_param.copy(), exp.DataType.Type.BIGINT)
        top = exp.cast(top_param.copy(), exp.DataType.Type.BIGINT)
        outcome = col(OUTCOME_DAYS, FOLLOWED)
        # Observation not holding the index date: censored on it.
        end = exp.func("COALESCE", col(END_DAYS, FOLLOWED), exp.Literal.number(0))
        event = exp.and_(
            outcome.is_(exp.null()).not_(),
            outcome.copy() <= end.copy(),
            outcome.copy() < top.copy(),
            copy=False,
        )

        def interval(days: exp.Expr, exit_: Exit) -> exp.Expr:
            start = exp.Sub(
                this=days.copy(), expression=exp.paren(exp.Mod(this=days, expression=width.copy()))
            )
            return exp.DPipe(this=text(start), expression=exp.Literal.string(f":{exit_.value}"))

        return (
            exp.Case()
            .when(event, interval(outcome.copy(), Exit.EVENT))
            .when(end.copy() < top.copy(), interval(end.copy(), Exit.CENSORED))
            .else_(exp.DPipe(this=text(top.copy()), expression=exp.Literal.string(":AT_RISK")))
        )

    # -- aggregation -------------------------------------------------------------------------

    @staticmethod
    def _aggregate(
        tables: Sequence[Breakdown],
        dimensions: Sequence[Dimension],
        measures: Sequence[MeasureKind],
    ) -> exp.Select:
        values = [measure_column(m) for m in measures]
        if not dimensions:
            return exp.select(exp.alias_(exp.Literal.number(0), GROUPING_ID), *values).from_(
                table(COHORT_CTE, COHORT)
            )
        columns = [exp.column(_column(d)) for d in dimensions]
        sets = dict.fromkeys(frozenset(t) for t in tables)
        grouping_sets = exp.GroupingSets(
            expressions=[
                exp.Tuple(expressions=[exp.column(_column(d)) for d in dimensions if d in s])
                for s in sets
            ]
        )
        return (
            exp.select(
                exp.alias_(exp.Grouping(expressions=[c.copy() for c in columns]), GROUPING_ID),
                *columns,
                *values,
            )
            .from_(exp.to_table(CELLS_CTE), copy=False)
            .group_by(grouping_sets, copy=False)
        )


def _half_up(value: exp.Expr) -> exp.Expr:
    """`value` rounded half up to a whole number (FLOOR(value + 0.5): the same in every
    dialect, where ROUND of a double is not)."""
    rounded = exp.func("FLOOR", exp.Add(this=value, expression=exp.Literal.number(0.5)))
    return exp.cast(rounded, exp.DataType.Type.BIGINT)


def _node_table(breakdown: Breakdown) -> Breakdown:
    for dimension in breakdown:
        if dimension not in DIMENSION_SQL:
            raise BadRequest(
                f"{dimension.value} is added by the gateway; a node never groups by it"
            )
    return breakdown


def _column(dimension: Dimension) -> str:
    return DIMENSION_SQL[dimension].column


def _dated(dimensions: Sequence[Dimension]) -> bool:
    """Whether a dimension reads each person's first dating event (CTE `index_event`)."""
    return any(DIMENSION_SQL[d].dated for d in dimensions)


def _population(cohort: exp.Select) -> exp.Select:
    return (
        exp.select(col(PERSON_INDEX, COHORT))
        .from_(table(COHORT_CTE, COHORT))
        .with_(COHORT_CTE, as_=cohort.copy())
    )


def _layout(breakdown: Breakdown, dimensions: Sequence[Dimension]) -> TableLayout:
    """GROUPING(d1, …, dn) sets bit n-1-k when d_k is not grouped in the row's set."""
    n = len(dimensions)
    grouping_id = sum(1 << (n - 1 - k) for k, d in enumerate(dimensions) if d not in breakdown)
    return TableLayout(
        by=breakdown,
        grouping_id=grouping_id,
        columns=tuple(_column(d) for d in breakdown),
    )


def compile_query(query: CohortQuery, *, dialect: Dialect = DUCKDB) -> CompiledQuery:
    """Compile `query` for `dialect` (`connectors.compiler.dialect`); values are all
    parameters."""
    return _CohortCompiler(query, dialect).compile()


def compile_persons(query: CohortQuery, *, dialect: Dialect = DUCKDB) -> SqlStatement:
    """Each person of the cohort with their age at its age date and their gender concept,
    rows `(person_index, age, gender_concept_id)`: what a regression's design reads at the
    node (`connectors.regression`), which releases only sums over them. Its concept sets
    must be bound (`ConceptSet` params, as `CompiledQuery.bind`)."""
    compiler = _CohortCompiler(query, dialect)
    select = (
        exp.select(col(PERSON_INDEX, COHORT), col(AGE, COHORT), col("gender_concept_id", COHORT))
        .from_(table(COHORT_CTE, COHORT))
        .with_(COHORT_CTE, as_=compiler._cohort(), copy=False)
    )
    statement, indexes = renumbered(select)
    values = compiler.params.values
    return SqlStatement(dialect.sql(statement), tuple(values[i] for i in indexes))


def compile_measured(
    query: CohortQuery,
    measurement: NumericVariable,
    window: RelativeWindow,
    *,
    dialect: Dialect = DUCKDB,
) -> SqlStatement:
    """Each person of the cohort (which has an explicit index) with a measurement of
    `measurement`'s code in `window` around their index date, and their value in whole
    units of its resolution (rounded half up): the first or last such measurement (by date,
    then by measurement id) or the mean of their whole units (not rounded: the node rounds,
    as `_units` does). Rows `(person_index, units)`; persons without a value have no row.
    What a regression's measurement term reads at the node (`connectors.regression`), which
    clips, scales and releases only sums over them."""
    compiler = _CohortCompiler(query, dialect)
    return compiler.measured(measurement, window)
