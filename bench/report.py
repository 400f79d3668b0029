"""The markdown report and its plots."""

from __future__ import annotations

import os
from collections.abc import Sequence

from bench.results import Figure, Results
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


def notes_for(figures: Sequence[Figure]) -> list[str]:
    out = []
    for f in figures:
        if f.note:
            out.append(f"- {f.workload}, {f.label}: {f.note}.")
    return out


def markdown(results: Results, *, image_dir: str, header: Sequence[str]) -> str:
    parts = [*header, "", "## Results", ""]
    parts.append(
        "Each cell is the median over the repetitions, with the spread (min-max) in"
        " parentheses. The ratio is chancy's figure divided by the W4 reference figure"
        " measured right before it in the same repetition (for latencies a ratio above 1"
        " means slower than the reference)."
    )
    parts += ["", table(results.figures), ""]
    notes = notes_for(results.figures)
    if notes:
        parts += ["Per-figure notes:", "", *notes, ""]
    if results.notes:
        parts += ["## Notes", "", *[f"- {n}" for n in results.notes], ""]
    if results.series:
        parts += [
            "## Throughput over time",
            "",
            "Jobs completed per second (250 ms bins) during the first repetition of each W2"
            " drain, from the first claim.",
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
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for name, series in results.series.items():
            xs, ys = _binned(series, 0.25)
            ax.plot(xs, ys, label=name, linewidth=1.2)
        ax.set_xlabel("seconds since the first claim")
        ax.set_ylabel("jobs completed per second")
        ax.set_title("Drain throughput over time (W2, one worker; W4 reference)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
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
