"""The plot of bench/README.md: fan-out overhead against node count, gateway and bare
baseline, at concurrency 1 and under load, from a results file of `python -m bench`.

    python -m bench.plot bench/results/latest.json bench/fanout-overhead.png
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.fanout import MEDIAN_GOALS_MS


def plot(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    fanout = results["data"]["fanout"]
    rows = fanout["results"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    for ax, loaded in zip(axes, (False, True), strict=True):
        chosen = [r for r in rows if (r["load"] != "c=1") is loaded]
        nodes = [r["nodes"] for r in chosen]
        for target, color in (("gateway", "tab:blue"), ("baseline", "tab:gray")):
            p50 = [r[target]["overhead"]["p50"] for r in chosen]
            p99 = [r[target]["overhead"]["p99"] for r in chosen]
            ax.plot(nodes, p50, "o-", color=color, label=f"{target} median")
            ax.plot(nodes, p99, "v--", color=color, alpha=0.6, label=f"{target} p99")
        goal_nodes = sorted(MEDIAN_GOALS_MS)
        ax.plot(
            goal_nodes,
            [MEDIAN_GOALS_MS[n] for n in goal_nodes],
            "s",
            color="tab:green",
            label="goal (median)",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(nodes, [str(n) for n in nodes])
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("nodes")
        loads = ", ".join(sorted({r["load"] for r in chosen}))
        ax.set_title("concurrency 1" if not loaded else f"open-loop load ({loads})")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms over the slowest node")
    axes[1].legend(fontsize=8, loc="upper left")
    tracing = "on" if fanout["tracing"] else "off"
    start = results["data"].get("machine_at_start", results["machine"])
    fig.suptitle(
        f"Fan-out overhead (nodes answer in {fanout['delay_ms'][0]:g}–{fanout['delay_ms'][1]:g} "
        f"ms; tracing {tracing}; {results['started']}, 2 cores shared, load average "
        f"{start['load_average_1_5_15'][0]:g} at start, "
        f"{results['machine']['load_average_1_5_15'][0]:g} at end)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m bench.plot RESULTS.json OUT.png", file=sys.stderr)
        return 2
    plot(json.loads(Path(args[0]).read_text()), Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
