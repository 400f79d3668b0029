"""The markdown report and its plots."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from bench.drain import OUTSIDE
from bench.results import Conditioned, Figure, Results
from bench.stats import Summary

THROUGHPUT_PNG = "bench-throughput.png"
LATENCY_PNG = "bench-latency.png"


def _num(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.2f}"
    return f"{value:,.0f}"


def _summary(s: Summary, unit: str) -> str:
    if len(s.values) == 1:
        return _num(s.median, unit)
    return f"{_num(s.median, unit)} ({_num(s.low, unit)}-{_num(s.high, unit)})"


def _ratio(s: Summary) -> str:
    if len(s.values) == 1:
        return f"{s.median:.2f}"
    return f"{s.median:.2f} ({s.low:.2f}-{s.high:.2f})"


def _met(f: Figure) -> str:
    met = f.met
    if met is None:
        return ""
    return "met" if met else "**not met**"


def table(figures: Sequence[Figure]) -> str:
    lines = [
        "| | figure | chancy | W4 reference | ratio to W4 | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append(
            f"| {f.workload} | {f.label} ({f.unit}) | {_summary(f.summary, f.unit)}"
            f" | {_summary(f.reference_summary, f.unit)} | {_ratio(f.ratios)}"
            f" | {f.target} | {_met(f)} |"
        )
    return "\n".join(lines)


def _case(f: Figure, *, bold: bool = False) -> str:
    name = f"**{f.condition}**" if bold else f.condition
    cut = f" (cut off {f.cut} of {len(f.values)})" if f.cut else ""
    return f"{name}: {_num(f.summary.median, f.unit)}{cut}, ratio {_ratio(f.ratios)}"


def _group_met(g: Conditioned) -> str:
    met = g.met
    if met is None:
        return ""
    return "met" if met else "**not met**"


def conditioned_table(groups: Sequence[Conditioned]) -> str:
    """Best and worst condition side by side, one row per figure and measure."""
    lines = [
        "| | figure | measured by | best condition | worst condition | worst / best | target | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        for i, measure in enumerate(g.measures):
            best, worst = g.best(measure), g.worst(measure)
            if best.higher_is_better:
                spread = f"{worst.ratios.median / best.ratios.median:.2f}"
            else:
                spread = f"{worst.ratios.median / best.ratios.median:.2f}x"
            unit = g.figures[measure][0].unit
            first = i == 0
            lines.append(
                f"| {g.workload if first else ''} | {f'{g.label} ({unit})' if first else ''}"
                f" | {measure} | {_case(best)} | {_case(worst, bold=len(g.figures[measure]) > 1)}"
                f" | {spread} | {g.target if first else ''} | {_group_met(g) if first else ''} |"
            )
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:,.0f} ms"


def detail_table(groups: Sequence[Conditioned]) -> str:
    """Every condition of every figure: each measure with its ratio, in one row."""
    lines = [
        "| | figure | condition | chancy | ratio to W4 | chancy, outside poller"
        " | ratio to W4 | W4 reference | start-up | write-back | autovacuum, autoanalyze runs"
        " | cut off |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        measures = g.measures
        for i, first in enumerate(g.figures[measures[0]]):
            condition, unit = first.condition, first.unit
            second = next((f for f in g.figures.get(OUTSIDE, []) if f.condition == condition), None)
            if measures[0] == OUTSIDE:
                second = None
            d = g.details.get(condition, {})
            maint = f"{d['autovacuum']}, {d['autoanalyze']}" if d else ""
            cut = ", ".join(f"{k:,}" for k in d.get("cut") or [])
            if cut:
                cut = f"{len(d['cut'])} of {len(first.values)}, with {cut} of {d['n']:,} done"
            lines.append(
                f"| {g.workload if i == 0 else ''} | {f'{g.label} ({unit})' if i == 0 else ''}"
                f" | {condition} | {_summary(first.summary, unit)} ({measures[0]})"
                f" | {_ratio(first.ratios)}"
                f" | {_summary(second.summary, unit) if second else ''}"
                f" | {_ratio(second.ratios) if second else ''}"
                f" | {_summary(first.reference_summary, unit)}"
                f" | {_seconds(d.get('startup'))} | {_seconds(d.get('writeback'))} | {maint}"
                f" | {cut} |"
            )
    return "\n".join(lines)


def reference_table(figures: Sequence[Figure]) -> str:
    lines = [
        "| figure | value | compared with | its value | ratio |",
        "|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append(
            f"| {f.label} ({f.unit}) | {_summary(f.summary, f.unit)} | {f.reference_label}"
            f" | {_summary(f.reference_summary, f.unit)} | {_ratio(f.ratios)} |"
        )
    return "\n".join(lines)


def notes_for(figures: Sequence[Figure | Conditioned]) -> list[str]:
    out = []
    for f in figures:
        if f.note:
            out.append(f"- {f.workload}, {f.label}: {f.note}.")
    return out


CONDITIONS_TEXT = (
    "Every drain runs under each statistics condition in every repetition, each on its own"
    " installation: `fresh` (the table as created and pushed to, never analyzed),"
    " `analyzed` (`VACUUM ANALYZE` of the jobs table with the whole backlog queued, right"
    " before the workers start: what autovacuum does after a large insert) and `autovacuum`"
    " (aggressive per-table autovacuum and autoanalyze settings; the statistics are whatever"
    " autovacuum last took, when the server chose to). W5's table is loaded once, so its"
    " conditions run one after the other (fresh, analyzed, autovacuum). Each drain starts new"
    " chancy workers (in worker processes kept for the run) once the backlog is queued, and is"
    " measured two ways: by the **database clock** (first `started_at` to last"
    " `completed_at`) and by an **outside poller** (from the moment the workers are told to"
    " start to the moment the benchmark process, polling every 10 ms, sees no unfinished job),"
    " so the workers' start-up and the write-back of the last completions count. Targets are"
    " judged on the worst condition, database clock: users get whatever statistics their"
    " tables have."
)


def _cap_text(results: Results) -> str:
    sizes = results.info.get("sizes")
    cap = getattr(sizes, "drain_cap", None)
    if cap is None:
        return ""
    return (
        f" A drain not finished {cap:g} s after the go is cut off (its workers stopped) and"
        " measured over the jobs it finished by then, marked *cut off*: a collapsed drain"
        " would take minutes."
    )


def markdown(results: Results, *, image_dir: str, header: Sequence[str]) -> str:
    parts = [*header, "", "## Results", ""]
    parts.append(
        "Each cell is the median over the repetitions, with the spread (min-max) in"
        " parentheses. The ratio is chancy's figure divided by the W4 reference figure"
        " measured right before it in the same repetition (for latencies a ratio above 1"
        " means slower than the reference)."
    )
    plain = [f for f in results.figures if f.workload != "W4"]
    if plain:
        parts += ["", table(plain), ""]
    if results.conditioned:
        parts += [
            "## Drains under three statistics conditions",
            "",
            CONDITIONS_TEXT + _cap_text(results),
            "",
            conditioned_table(results.conditioned),
            "",
            "### Every condition",
            "",
            "Each measure with its ratio to the W4 figure of the same repetition. Start-up:"
            " from the go to the first claim; write-back: from the last completion"
            " (`completed_at`) to the poller seeing it (both medians); autovacuum and"
            " autoanalyze runs on the jobs table that ended during the drains, summed over the"
            " repetitions.",
            "",
            detail_table(results.conditioned),
            "",
        ]
    own = [f for f in results.figures if f.workload == "W4"]
    if own:
        parts += [
            "## W4, the reference",
            "",
            "The reference loops themselves (see bench/README.md), each against the loop it"
            " replaced or extends, measured in the same repetition.",
            "",
            reference_table(own),
            "",
        ]
    notes = notes_for([*results.figures, *results.conditioned])
    if notes:
        parts += ["Per-figure notes:", "", *notes, ""]
    if results.notes:
        parts += ["## Notes", "", *[f"- {n}" for n in results.notes], ""]
    if results.series:
        parts += [
            "## Throughput over time",
            "",
            "Jobs completed per second (250 ms bins) during the first repetition of each W2"
            " drain, from the first claim: every executor in the `fresh` condition, and the"
            " tuned async worker under each condition.",
            "",
            f"![throughput over time]({image_dir}{THROUGHPUT_PNG})",
            "",
        ]
    if results.latencies:
        parts += [
            "## Latency distribution",
            "",
            "W3, first repetition: start minus push time of every job.",
            "",
            f"![latency distribution]({image_dir}{LATENCY_PNG})",
            "",
        ]
    if results.timings:
        parts += ["## Phases", ""]
        parts += [f"- {k}: {v:.0f} s" for k, v in results.timings.items()]
        parts.append("")
    return "\n".join(parts)


def _figure_json(fig: Figure) -> dict[str, Any]:
    return {
        "workload": fig.workload,
        "label": fig.label,
        "unit": fig.unit,
        "condition": fig.condition,
        "measure": fig.measure,
        "values": fig.values,
        "reference": fig.reference,
        "reference_label": fig.reference_label,
    }


def as_json(results: Results) -> list[dict[str, Any]]:
    """Every figure and each condition of the conditioned ones, for results.json."""
    out = [{**_figure_json(f), "target": f.target, "met": f.met} for f in results.figures]
    for g in results.conditioned:
        for measure in g.measures:
            for f in g.figures[measure]:
                out.append(
                    {
                        **_figure_json(f),
                        "target": g.target,
                        "met": g.met,
                        "details": g.details.get(f.condition, {}),
                    }
                )
    return out


def plots(results: Results, out_dir: str) -> list[str]:
    """Write the PNG plots; return their paths (none when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        results.notes.append("matplotlib is not installed: no plots were made")
        return []
    written = []
    if results.series:
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
        by_executor = {
            k: v for k, v in results.series.items() if "(" not in k or k.endswith("(fresh)")
        }
        by_condition = {
            k: v
            for k, v in results.series.items()
            if k.startswith("chancy async, tuned (") or "(" not in k
        }
        for ax, series, title in (
            (left, by_executor, "Each executor, fresh statistics"),
            (right, by_condition, "Async, tuned, by statistics condition"),
        ):
            for name, points in series.items():
                xs, ys = _binned(points, 0.25)
                ax.plot(xs, ys, label=name, linewidth=1.2)
            ax.set_xlabel("seconds since the first claim")
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        left.set_ylabel("jobs completed per second")
        fig.suptitle("Drain throughput over time (W2, one worker; W4 reference)")
        fig.tight_layout()
        path = os.path.join(out_dir, THROUGHPUT_PNG)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if results.latencies:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
        for name, data in results.latencies.items():
            if not data:
                continue
            ms = sorted(x * 1000 for x in data)
            ys = [(i + 1) / len(ms) for i in range(len(ms))]
            right.plot(ms, ys, label=name, linewidth=1.2)
            left.hist(ms, bins=60, alpha=0.55, label=name)
        left.set_xlabel("start - push (ms)")
        left.set_ylabel("jobs")
        left.set_title("Histogram")
        left.legend(fontsize=8)
        right.set_xscale("log")
        right.set_xlabel("start - push (ms, log scale)")
        right.set_ylabel("fraction of jobs")
        right.set_title("Cumulative distribution")
        right.grid(alpha=0.3)
        right.legend(fontsize=8)
        fig.suptitle("Enqueue-to-start latency (W3)")
        fig.tight_layout()
        path = os.path.join(out_dir, LATENCY_PNG)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _binned(series: Sequence[tuple[float, int]], width: float) -> tuple[list[float], list[float]]:
    if not series:
        return [], []
    end = max(t for t, _ in series)
    bins = [0] * (int(end / width) + 1)
    for t, n in series:
        bins[min(int(t / width), len(bins) - 1)] += n
    return [i * width for i in range(len(bins))], [b / width for b in bins]
