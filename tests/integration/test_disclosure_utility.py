"""`bench/disclosure_utility.py` against the suite's federation, one applicant per table: what
holds whatever the noise draws, so that the benchmark cannot silently measure something else.
Every domain cell is listed, released values reach their minimum, LOW and suppressed numbers
carry no value, margins change no inner cell, each applicant's privacy lines add up, and the
benchmark's own truth stays within six noise sds of every released count."""

from __future__ import annotations

import asyncio
import math
from collections import Counter, defaultdict
from functools import cache

import duckdb
import numpy as np
import pytest

from bench.cohorts import (
    JURISDICTION,
    Breakdown,
    Cohort,
    Question,
    gateway_cells,
    node_table,
    split_key,
)
from bench.disclosure_utility import TABLES, figures, run
from bench.researcher import Applicant, Released
from bench.study import SESSION, summarise
from bench.truth import persons, tabulate
from bench.utility_report import print_report
from bench.utility_results import Results
from connectors.ledger import Account, FileLedger, units
from schema.codes import Jurisdiction
from tessera.local import LocalFederation

pytestmark = pytest.mark.integration

SD = 5.0  # every member's sigma in the shipped policies
CellKey = tuple[str, ...]


@pytest.fixture(scope="module")
def results(federation: LocalFederation) -> Results:
    return asyncio.run(run(federation, draws=1, concurrency=2))


def _check_value(value: Released, minimum: int, *, pooled: bool) -> None:
    if value.value is None:
        # A pooled number is LOW below the strictest minimum when pooled securely, and
        # SUPPRESSED when a part summed into it was not released.
        assert value.status in ({"SUPPRESSED", "LOW"} if pooled else {"LOW"}), value
        return
    assert value.status == "PERTURBED", value
    assert value.value >= minimum, value
    assert value.sd is not None
    assert value.sd >= SD


def test_every_cell_listed_released_at_the_minimum_low_without_value(results: Results) -> None:
    # Per table: alone and with margins later by one applicant, with margins by another;
    # then alone, coarse; then the session.
    assert len(results.asked) == 3 * len(TABLES) + len(TABLES) + len(SESSION)
    for record in results.asked:
        answer, question = record.answer, record.question
        answered = [j.value for j in answer.answered]
        assert answered, question.label
        strictest = max(results.minimums[j] for j in answer.answered)
        _check_value(answer.count, strictest, pooled=True)
        # The bench asks the pooled count alone: no country released a count of its own.
        assert all(answer.nodes[j].count is None for j in answer.answered)
        for by in question.tables:
            cells = answer.tables[by]
            assert set(cells) == set(gateway_cells(by, question.cohort, answered)), by
            for key, value in cells.items():
                code, _ = split_key(by, key)
                if code is None:
                    _check_value(value, strictest, pooled=True)
                else:
                    _check_value(value, results.minimums[Jurisdiction(code)], pooled=False)


def test_margins_leave_the_inner_cells_as_they_were(results: Results) -> None:
    assert [m.table for m in results.margins] == list(TABLES)
    for margins in results.margins:
        assert margins.draws == 1
        assert margins.identical == margins.draws - margins.rejected, margins.table.name

        # Pooled securely, a question charges its national tables (the tables by JURISDICTION,
        # the country's total only when asked: by JURISDICTION alone) and its pooled ones (the
        # pooled count, the tables without it) apart. The margins asked later are charged as
        # new releases only (JURISDICTION × AGE_BAND_10's margin by JURISDICTION is the
        # countries' totals, released nationally for the first time).
        def charged(question: Question) -> int:
            return len(question.national_tables) + len(question.pooled_tables)

        alone, at_once = charged(margins.table.alone()), charged(margins.table.with_margins())
        rho = 1 / (2 * SD * SD)
        assert margins.alone_rho == [pytest.approx(alone * rho)]
        assert margins.later_rho == [pytest.approx((at_once - alone) * rho)]
        assert margins.at_once_rho == [pytest.approx(at_once * rho)]


def test_privacy_lines_add_up_per_applicant(results: Results) -> None:
    history: dict[tuple[Applicant, Jurisdiction], list[tuple[float, float] | None]] = defaultdict(
        list
    )
    for record in results.asked:
        for jurisdiction in record.answer.nodes:
            p = record.answer.nodes[jurisdiction].privacy
            if p is None:  # rejected by the gateway: charged at the node, unseen
                history[record.applicant, jurisdiction].append(None)
                continue
            assert p.cap_rho == 0.5
            assert p.organisation_spent_rho == pytest.approx(p.spent_rho)
            # Each new table costs 1/(2 sigma^2): a question's cost is a whole number of them.
            tables = p.question_rho * 2 * p.sigma * p.sigma
            assert tables == pytest.approx(round(tables))
            history[record.applicant, jurisdiction].append((p.question_rho, p.spent_rho))
    assert len({applicant for applicant, _ in history}) == 2 * len(TABLES) + len(TABLES) + 1
    for lines in history.values():
        spent, unseen = 0.0, False
        for line in lines:
            if line is None:
                unseen = True
                continue
            question_rho, spent_rho = line
            if unseen:
                assert spent_rho > spent + question_rho
            else:
                assert spent_rho == pytest.approx(spent + question_rho)
            spent, unseen = spent_rho, False
    summary = summarise(results.session)
    assert summary.privacy_adds_up
    assert summary.repeats_identical
    assert summary.cost_mismatches == []
    assert [s.number for s in results.session] == list(range(1, len(SESSION) + 1))


def test_the_sessions_ledger_replay_is_each_nodes_ledger_person_by_person(
    results: Results, federation: LocalFederation
) -> None:
    # Who dropped out, and so the session's figures, rest on the replay: it must charge every
    # person exactly what the node charged them.
    researcher = results.asked[-1].applicant.researcher
    for jurisdiction in federation.jurisdictions:
        with duckdb.connect(str(federation.database(jurisdiction)), read_only=True) as db:
            indexes = dict(
                db.execute("SELECT person_id, person_index FROM tessera_person").fetchall()
            )
        ledger = FileLedger(federation.node_state(jurisdiction) / "ledger")
        charged = ledger.array(Account("researcher", researcher, units(0.5)), len(indexes))
        replayed = np.zeros(len(charged), dtype=np.int64)
        for (node, person), spend in results.replay.spend.items():
            if node is jurisdiction:
                replayed[indexes[person]] = spend
        assert np.count_nonzero(replayed) > 100
        assert np.array_equal(charged.astype(np.int64), replayed), jurisdiction


def test_the_benchmarks_truth_is_within_six_sds_of_every_released_count(
    results: Results, federation: LocalFederation
) -> None:
    @cache
    def truth(jurisdiction: Jurisdiction, cohort: Cohort, table: Breakdown) -> Counter[CellKey]:
        return tabulate(persons(federation.database(jurisdiction), cohort), table)

    # Fresh applicants, far from their caps: nobody drops out, so every released count is its
    # truth plus noise, which never strays six sds in any run of this suite.
    checked = 0
    for record in results.asked[: -len(SESSION)]:
        question, answer = record.question, record.answer
        for by in question.tables:
            if JURISDICTION not in by:
                continue
            for key, value in answer.tables[by].items():
                if value.value is None or value.sd is None:
                    continue
                code, node_key = split_key(by, key)
                assert code is not None
                true = truth(Jurisdiction(code), question.cohort, node_table(by))[node_key]
                assert math.fabs(value.value - true) <= 6 * value.sd, (by, key, true)
                checked += 1
    assert checked > 100


def test_the_report_and_figures_come_out_of_any_run(
    results: Results, capsys: pytest.CaptureFixture[str]
) -> None:
    print_report(results)
    out = capsys.readouterr().out
    for table in TABLES:
        assert out.count(f"\n{table.name}: ") == 2  # standard and coarse noise
    words = " ".join(out.split())
    assert "4. A study session: one researcher, 30 questions" in words
    assert "privacy lines add up: yes" in words
    names = [f.name for f in figures(results)]
    assert "bias of clear released cells" in names
