"""The simulator's tables: one per attack class, then a summary."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bench.attacks.verdict import MIN_TRIALS, RULE, ClassResult, CountTarget

EXAMPLES_PER_NODE = 2


def _f(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _target(t: CountTarget) -> str:
    estimate = "no estimate" if t.estimate is None else f"{t.estimate:7.2f} ± {_f(t.se)}"
    return f"    {t.label[:34]:<34} {t.jurisdiction.value:<4} {t.truth:>5}  {estimate}"


def render(result: ClassResult, *, every_target: bool = False) -> str:
    pinned = f" ({', '.join(result.pinned_in)})" if result.pinned_in else ""
    spent = f"{result.questions} questions"
    if result.approvals > 1:
        spent += f" under {result.approvals} applications"
    spent += f" (allowance {result.allowance} per permit per day"
    spent += ", spent)" if result.exhausted else ")"
    lines = [
        f"[{result.number}] {result.title}",
        f"    {result.method}",
        f"    {spent}; {result.seconds:.1f} s",
    ]
    if result.privacy:
        figures = ", ".join(f"{k} {v:g}" for k, v in sorted(result.privacy.items()))
        lines.append(f"    privacy spend reported (largest): {figures}")
    lines.extend(f"    {note}" for note in result.notes)
    if result.kind == "count":
        lines.append(f"    {'target':<34} {'node':<4} {'truth':>5}  estimate ± SE")
        shown: dict[str, int] = {}
        for t in result.targets:
            j = t.jurisdiction.value
            if every_target or shown.get(j, 0) < EXAMPLES_PER_NODE:
                lines.append(_target(t))
                shown[j] = shown.get(j, 0) + 1
        hidden = len(result.targets) - sum(shown.values())
        if hidden:
            lines.append(f"    … and {hidden} more targets")
        lines.append(
            f"    {'node':<5} {'targets':>7} {'estimated':>9} {'RMSE':>6} {'median SE':>9} "
            f"{'SE<1':>5} {'their RMSE':>10}  verdict"
        )
        for row in result.count_rows():
            lines.append(
                f"    {row.scope:<5} {row.targets:>7} {row.estimated:>9} {_f(row.rmse):>6} "
                f"{_f(row.median_se):>9} {row.claimed:>5} {_f(row.claimed_rmse):>10}  {row.verdict}"
            )
    else:
        lines.append(
            f"    {'node':<5} {'trials':>6} {'members':>7} {'others':>6} "
            f"{'balanced accuracy':>17} {'by chance at the cap':>20}  verdict"
        )
        for m in result.membership_rows():
            verdict = (
                m.verdict if min(m.members, m.others) >= MIN_TRIALS else f"(< {MIN_TRIALS} of each)"
            )
            accuracy = "—" if m.accuracy is None else f"{m.accuracy:.0%}"
            chance = "—" if m.chance is None else f"{m.chance:.3f}"
            lines.append(
                f"    {m.scope:<5} {m.members + m.others:>6} {m.members:>7} {m.others:>6} "
                f"{accuracy:>17} {chance:>20}  {verdict}"
            )
    lines.append(f"    => {result.verdict}{pinned}")
    return "\n".join(lines)


def summary(results: Sequence[ClassResult], protection: Iterable[str]) -> str:
    lines = ["", "Summary", f"  {RULE}"]
    lines.extend(f"  {line}" for line in protection)
    lines.append(f"  {'class':<6} {'questions':>9}  {'verdict':<8} pinned in")
    for r in sorted(results, key=lambda r: r.number):
        lines.append(
            f"  {r.number:<6} {r.questions:>9}  {r.verdict:<8} {', '.join(r.pinned_in) or '—'}"
            f"   {r.title}"
        )
    return "\n".join(lines)
