"""The utility run's report (`bench/disclosure_utility.py`): compact tables with their
legends."""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Sequence

from bench.cohorts import REFERENCE_DATE, Noise
from bench.researcher import Answer, Released
from bench.study import Step, mean, signed, summarise
from bench.utility_results import CLEAR_SDS, POOLED, Results, profiles


def _pct(share: float) -> str:
    return "—" if math.isnan(share) else f"{share:.1%}"


def _num(value: float, spec: str = "+.2f") -> str:
    return "—" if math.isnan(value) else format(value, spec)


def print_tables(results: Results, noise: Noise) -> None:
    for run in (r for r in results.tables if r.noise == noise):
        cells = next(iter(run.tallies.values())).cells // max(results.draws, 1)
        print(f"\n{run.table.name}: {cells} cells per country, noise sd {run.sd:g}")
        print(
            f"  {'':<7} {'min':>4} {'clear':>6} {'released':>9} {'all':>7} {'empty':>6}"
            f" {'bias (clear)':>14} {'bias (all)':>10} {'MAE':>5} {'rejected':>8}"
        )
        for name, t in run.tallies.items():
            print(
                f"  {name:<7} {t.minimum:>4} {t.clear / max(results.draws, 1):>6.1f}"
                f" {_pct(t.clear_share):>9} {_pct(t.share):>7}"
                f" {_pct(t.released_empty / t.released if t.released else math.nan):>6}"
                f" {_num(t.bias):>7} ± {_num(t.bias_se, '.2f'):<4} {_num(t.bias_all):>10}"
                f" {_num(t.mae, '.2f'):>5} {t.rejected if name != POOLED else '':>8}"
            )


def print_margins(results: Results) -> None:
    print(
        f"\n  {'table':<44} {'inner cells released':>21} {'margins later':>14}"
        f" {'at once':>13}   {'rho: alone':>10} {'+margins':>9} {'at once':>8}"
    )
    for m in results.margins:
        print(
            f"  {m.table.name:<44} {_mean_se(m.alone_released):>21}"
            f" {f'{m.identical}/{m.draws - m.rejected} same':>14}"
            f" {_mean_se(m.at_once_released):>13}   {mean(m.alone_rho):>10.3f}"
            f" {mean(m.later_rho):>9.3f} {mean(m.at_once_rho):>8.3f}"
        )


def _mean_se(values: Sequence[int]) -> str:
    if len(values) < 2:
        return _num(mean(values), ".1f")
    se = statistics.stdev(values) / math.sqrt(len(values))
    return f"{statistics.fmean(values):.1f} ± {se:.1f}"


def print_profiles(results: Results) -> None:
    print(
        f"\n  {'noise':<9} {'sd':>3} {'MAE':>5} {'bias':>13} {'clear released':>15}"
        f" {'all':>6} {'rejected':>9} {'rho/table':>10} {'tables':>7} {'questions':>10}"
    )
    for p in profiles(results):
        print(
            f"  {p.noise:<9} {p.sd:>3g} {p.mae:>5.2f} {p.bias:>+6.2f} ± {p.bias_se:.2f}"
            f" {_pct(p.clear_share):>15} {_pct(p.share):>6} {f'{p.rejected}/{p.answers}':>9}"
            f" {p.table_rho:>10.4f}"
            f" {p.tables:>7} {p.questions:>10}"
        )


def _seen(value: Released) -> str:
    if value.value is None:
        return value.status
    return f"{value.value:,} ± {value.sd:g}" if value.sd else f"{value.value:,}"


def privacy_line(answer: Answer) -> str:
    """The privacy line as the researcher reads it: +question → spent / cap (every node)."""
    lines = {answer.privacy(j) for j in answer.answered}
    if not lines:
        return "—"
    line = max(lines, key=lambda p: p.spent_rho)
    text = f"+{line.question_rho:.3f} → {line.spent_rho:.3f}/{line.cap_rho:g}"
    return text + (" (nodes differ)" if len(lines) > 1 else "")


def print_session(steps: Sequence[Step]) -> None:
    print(
        f"\n  {'#':>2} {'question':<50} {'the researcher sees':<27} {'privacy (each node)':<22}"
        f" {'error':>5} {'z':>6} {'z′':>5} {'dropped':>7}"
    )
    for step in steps:
        answer = step.answer
        seen = _seen(answer.count)
        cells = [c for by in step.question.tables for c in answer.tables[by].values()]
        if cells:
            seen += f", {sum(c.value is not None for c in cells)}/{len(cells)} cells"
        if answer.rejected:
            seen += f" ({', '.join(j.value for j in answer.rejected)} rejected)"
        value = answer.count.value
        error = "—" if value is None else f"{value - step.total_truth:+d}"
        print(
            f"  {step.number:>2} {step.question.label[:50]:<50} {seen:<27}"
            f" {privacy_line(answer):<22} {error:>5} {signed(step.drift_z):>6}"
            f" {signed(step.counted_z):>5} {step.dropped:>7}"
        )


def note(text: str) -> None:
    """A legend under a table, wrapped to the tables' width."""
    print()
    print(textwrap.fill(text, width=98, initial_indent="  ", subsequent_indent="  "))


def print_report(results: Results) -> None:
    countries = ", ".join(j.value for j in results.minimums)
    print(
        f"\nWhat the protection costs: {results.persons:,} synthetic persons per country"
        f" ({countries}), reference date {REFERENCE_DATE},\n{results.draws} fresh applicants"
        " per table and noise profile"
    )
    print("\n1. Tables, standard noise")
    print_tables(results, "STANDARD")
    note(
        f"clear: cells per draw whose truth ≥ minimum + {CLEAR_SDS} sd (pooled securely: the"
        " pooled truth against the strictest minimum, with the pooled sd; a sum of released"
        " parts: every part's);"
        " released: share of those released; all: share of every cell of the public domain"
        " released; empty: share of released cells whose truth is 0; bias: mean released −"
        " truth over clear released cells ± its standard error (all: over every released"
        " cell; near the minimum a cell is released only when its noise drew it up); MAE:"
        " mean |released − truth| over clear released cells; rejected: draws whose answer"
        " the gateway rejected (the researcher got none of its cells)."
    )
    print("\n2. Margins: a table alone, then with its two margins")
    print_margins(results)
    note(
        "inner cells released: per draw, every country's cells (± standard error); margins"
        " later: the same applicant asks again with both margins (the same cells, the same"
        " values?); at once: fresh applicants ask with both margins; rho: what each question"
        " charged each person counted (alone, the margins asked later, all at once)."
    )
    print("\n3. Profiles: the same tables with noise: COARSE")
    print_tables(results, "COARSE")
    print()
    print_profiles(results)
    note(
        "MAE, bias: over clear released cells of every table and country; clear released:"
        " the lowest share of any table and country; rejected: answers the gateway rejected;"
        " rho/table: from the answers' privacy lines, per table a node released (a table by"
        " JURISDICTION and the same table pooled are two); tables, questions (a new total and"
        " one table, the total released once, pooled): how many a person can be counted in"
        " before dropping out (cap / cost)."
    )
    if results.session:
        print(f"\n4. A study session: one researcher, {len(results.session)} questions")
        print_session(results.session)
        note(
            "error: released total − truth; z: every released pooled number's error over its"
            " noise, in sds (below −3: persons missing); z′: the same against the persons the"
            " replayed ledgers still counted; dropped: persons of the cohort not counted in"
            " the question's new tables, over every node (ledger replay)."
        )
        summary = summarise(results.session)
        print()
        for line in [*summary.lines(), *summary.cost_mismatches]:
            print(textwrap.fill(line, width=98, initial_indent="  ", subsequent_indent="    "))
