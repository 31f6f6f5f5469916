"""Rendering a GraphQL cohort answer as readable text tables for the terminal."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tessera.client.columns import cells_of_table

MAX_CELLS_SHOWN = 24


# Said by the count itself (its ± sd, the countries it pools): not repeated among the reasons.
SHOWN_BY_THE_COUNT = frozenset({"NOISE", "SECURE_POOL"})


def format_count(count: Mapping[str, Any] | None) -> str:
    if not count:
        return "—"
    value, status, sd = count.get("value"), count.get("status", ""), count.get("sd")
    if value is None:
        return "low" if status == "LOW" else "suppressed"
    if sd is not None:
        return f"{value:,} ±{sd:.0f}" if sd >= 10 else f"{value:,} ±{sd:.1f}"
    return f"{value:,}" if status in ("EXACT", "") else f"{value:,} ({status.lower()})"


def format_estimate(estimate: Mapping[str, Any] | None) -> str:
    """A derived number (a mean, a quartile): its value with the noise's sd, or its status."""
    if not estimate:
        return "—"
    value = estimate.get("value")
    if value is None:
        return "low" if estimate.get("status") == "LOW" else "suppressed"
    sd = estimate.get("sd")
    return f"{value:.3g} ±{sd:.2g}" if sd else f"{value:.3g}"


def format_summary(summary: Mapping[str, Any] | None) -> str:
    """A variable's summary on one line: mean ± its noise, its 95% interval, sd, n."""
    if not summary:
        return "—"
    mean = summary.get("mean") or {}
    text = format_estimate(mean)
    if mean.get("value") is not None:
        low = (summary.get("ciLow") or {}).get("value")
        high = (summary.get("ciHigh") or {}).get("value")
        if low is not None and high is not None:
            text += f" (95% CI {low:.3g} to {high:.3g})"
        sd = (summary.get("sd") or {}).get("value")
        if sd is not None:
            text += f", sd {sd:.3g}"
    n = summary.get("n")
    return text + (f", n {format_count(n)}" if n else "")


def format_rate(rate: Mapping[str, Any] | None) -> str:
    """An incidence rate on one line: the rate per its person-years ± its noise, its exact
    95% interval, the events and the person-years."""
    if not rate:
        return "—"
    estimate = rate.get("rate") or {}
    text = format_estimate(estimate)
    if estimate.get("value") is not None:
        low = (rate.get("ciLow") or {}).get("value")
        high = (rate.get("ciHigh") or {}).get("value")
        if low is not None and high is not None:
            text += f" (95% CI {low:.3g} to {high:.3g})"
    events = rate.get("events")
    if events:
        text += f"; events {format_count(events)}"
    years = rate.get("personYears") or {}
    value, sd = years.get("value"), years.get("sd")
    if value is None:
        text += f", person-years {format_estimate(years) if years else '—'}"
    else:
        text += f", {value:,.0f}{f' ±{sd:.2g}' if sd else ''} person-years"
    return text


def format_spend(privacy: Mapping[str, Any] | None) -> str:
    """What the answer cost at a node: this question's rho, and the spend so far of the cap."""
    if not privacy:
        return ""
    spent, cap = privacy.get("spentRho", 0), privacy.get("capRho", 0)
    text = f"+{privacy.get('questionRho', 0):.2f} → {spent:.2f} of {cap:.2f}"
    # The spend is the worst case over persons as if nobody had dropped out: past the cap it
    # says that persons in every cohort asked have reached it and drop out of the counts.
    return text + " (past the cap: persons who reached it drop out)" if spent > cap else text


def reasons_text(count: Mapping[str, Any] | None) -> str:
    reasons: Iterable[Mapping[str, Any]] = (count or {}).get("reasons") or []
    parts = []
    for r in reasons:
        if r.get("rule") in SHOWN_BY_THE_COUNT:
            continue
        where = f"{r['jurisdiction']}: " if r.get("jurisdiction") else ""
        parts.append(f"{where}{r.get('rule', '')} {r.get('message', '')}".strip())
    return "; ".join(parts)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    return "\n".join("    " + s for s in out)


def render_cohort(name: str, result: Mapping[str, Any]) -> str:
    lines = [f"  {name}"]
    if "count" in result:
        pooled = format_count(result["count"])
        contributors = (result["count"] or {}).get("contributors")
        if contributors:
            pooled += f"  (pooled securely: {', '.join(contributors)})"
        lines.append(f"    pooled count: {pooled}")
        why = reasons_text(result["count"])
        if why:
            lines.append(f"      why: {why}")
    if "summary" in result:
        lines.append(f"    pooled mean: {format_summary(result['summary'])}")
    if result.get("rate"):
        per = result["rate"].get("per")
        lines.append(f"    pooled rate per {per:,} person-years: {format_rate(result['rate'])}")
    nodes = result.get("byJurisdiction")
    if nodes:
        rows = [
            [
                n.get("jurisdiction", ""),
                n.get("status", ""),
                format_count(n.get("count")),
                f"{n['latencyMs']:.0f} ms" if n.get("latencyMs") is not None else "",
                format_spend(n.get("privacy")),
                reasons_text(n.get("count"))
                or "; ".join(
                    f"{r.get('rule')} {r.get('message', '')}" for r in n.get("reasons") or []
                ),
            ]
            for n in nodes
        ]
        headers = ["country", "node", "count", "latency", "privacy ρ", "reasons"]
        if any("summary" in n for n in nodes):
            for row, n in zip(rows, nodes, strict=True):
                row.insert(3, format_summary(n.get("summary")))
            headers.insert(3, "mean")
        if any(n.get("rate") for n in nodes):
            for row, n in zip(rows, nodes, strict=True):
                row.insert(3, format_rate(n.get("rate")))
            headers.insert(3, "rate")
        lines.append(text_table(headers, rows))
    for key, value in result.items():
        cells = cells_of_table(value) if isinstance(value, Mapping) else None
        if cells is not None:
            lines.append(f"    {key} ({len(cells)} cells)")
            if cells:
                dims = [d["name"] for d in cells[0]["dimensions"]]
                rows = [
                    [*(d["value"] for d in c["dimensions"]), format_count(c["count"])]
                    for c in cells[:MAX_CELLS_SHOWN]
                ]
                headers = [*dims, "count"]
                if any(c.get("rate") for c in cells):
                    for row, c in zip(rows, cells, strict=False):
                        row.append(format_rate(c.get("rate")))
                    headers.append("rate")
                lines.append(text_table(headers, rows))
                if len(cells) > MAX_CELLS_SHOWN:
                    lines.append(f"    … {len(cells) - MAX_CELLS_SHOWN} more cells")
            for group in value.get("quantiles") or ():
                where = ", ".join(d["value"] for d in group.get("dimensions") or ())
                median = group.get("median") or {}
                bound = f" (± the bin width, {median['bound']:g})" if median.get("bound") else ""
                lines.append(
                    f"    quartiles{' ' + where if where else ''}: "
                    f"q1 {format_estimate(group.get('q1'))}, "
                    f"median {format_estimate(median)}, q3 {format_estimate(group.get('q3'))}"
                    + (f", IQR {format_estimate(group['iqr'])}" if group.get("iqr") else "")
                    + bound
                )
    lines += _survival_lines(result.get("survival"))
    return "\n".join(lines)


def render_regression(name: str, fit: Mapping[str, Any]) -> str:
    """A regression's coefficients as a table (the fields the document selected)."""
    head = [name]
    for field in ("family", "iterations", "converged"):
        if field in fit:
            head.append(f"{field} {fit[field]}")
    lines = ["  ".join(head)]
    columns = ("estimate", "se", "noiseSd", "ciLow", "ciHigh", "pValue")
    shown = [c for c in columns if fit["coefficients"] and c in fit["coefficients"][0]]
    width = max([len("coefficient"), *(len(c.get("name", "")) for c in fit["coefficients"])])
    lines.append("  ".join(["coefficient".ljust(width), *(c.rjust(10) for c in shown)]))
    for coefficient in fit["coefficients"]:
        cells = [str(coefficient.get("name", "")).ljust(width)]
        cells += [f"{coefficient[c]:10.4g}" for c in shown]
        lines.append("  ".join(cells))
    for node in fit.get("byJurisdiction") or []:
        n = node.get("n") or {}
        lines.append(
            f"{node['jurisdiction']}: n {n.get('value', '-')} ({n.get('status', '-')}, "
            f"sd {n.get('sd', '-')})"
        )
    for reason in fit.get("reasons") or []:
        lines.append(f"{reason.get('jurisdiction') or '-'}: {reason.get('rule')}")
    return "\n".join(lines)


def _survival_lines(survival: Mapping[str, Any] | None) -> list[str]:
    """The pooled survival curves (S at each interval's end with its 95% band) and every
    log-rank test."""
    if not survival:
        return []
    lines = []
    for curve in survival.get("curves") or ():
        if curve.get("jurisdiction") is not None:
            continue
        group = ", ".join(d["value"] for d in curve.get("dimensions") or ()) or "everyone"
        lines.append(f"    survival, pooled: {group}")
        rows = []
        for step in curve.get("steps") or ():
            s = step.get("survival") or {}
            low, high = (
                (step.get("ciLow") or {}).get("value"),
                (step.get("ciHigh") or {}).get("value"),
            )
            rows.append(
                [
                    f"{step['start']}-{step['end']}",
                    _whole((step.get("atRisk") or {}).get("value")),
                    _whole((step.get("events") or {}).get("value"), step.get("events")),
                    "—" if s.get("value") is None else f"{s['value']:.3f} ±{s.get('sd') or 0:.2g}",
                    "" if low is None or high is None else f"{low:.3f}-{high:.3f}",
                ]
            )
        lines.append(text_table(["days", "at risk", "events", "survival", "95% band"], rows))
    for test in survival.get("logRank") or ():
        where = test.get("jurisdiction") or "pooled"
        statistic = (test.get("statistic") or {}).get("value")
        p = (test.get("pValue") or {}).get("value")
        lines.append(
            f"    log-rank by {test.get('dimension')} ({where}): "
            + (
                "withheld"
                if statistic is None or p is None
                else f"χ² {statistic:.2f}, {test.get('degreesOfFreedom')} df, p {p:.3g}"
            )
        )
    return lines


def _whole(value: float | None, estimate: Mapping[str, Any] | None = None) -> str:
    if value is None:
        return str((estimate or {}).get("status") or "—").lower()
    return f"{value:,.0f}"


def render_response(title: str, response: Mapping[str, Any]) -> str:
    lines = [f"== {title}"]
    for error in response.get("errors") or []:
        code = (error.get("extensions") or {}).get("code", "")
        lines.append(f"  error {code}: {error.get('message', '')}")
    for name, result in (response.get("data") or {}).items():
        if isinstance(result, Mapping) and "coefficients" in result:
            lines.append(render_regression(name, result))
        elif isinstance(result, Mapping):
            lines.append(render_cohort(name, result))
    return "\n".join(lines)
