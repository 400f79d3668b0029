"""What the workloads measure, collected for the report."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from bench.stats import Summary


@dataclasses.dataclass
class Figure:
    """One reported figure: chancy's value per repetition and the reference's, same reps."""

    workload: str
    label: str
    unit: str
    values: list[float]
    reference: list[float]
    reference_label: str
    higher_is_better: bool = True
    #: What the issue asks of this figure, in words, and a check of the median.
    target: str = ""
    check: Callable[[Figure], bool] | None = None
    note: str = ""
    #: For a drain: the statistics condition and how it was measured (see bench.drain).
    condition: str = ""
    measure: str = ""
    #: For a drain: how many of its repetitions were cut off before they finished.
    cut: int = 0

    @property
    def summary(self) -> Summary:
        return Summary.of(self.values)

    @property
    def reference_summary(self) -> Summary:
        return Summary.of(self.reference)

    @property
    def ratios(self) -> Summary:
        """chancy / reference per repetition (paired), then median and spread."""
        return Summary.of([v / r for v, r in zip(self.values, self.reference, strict=True)])

    @property
    def met(self) -> bool | None:
        return None if self.check is None else self.check(self)

    def goodness(self) -> float:
        """The median ratio, oriented so that higher is better."""
        ratio = self.ratios.median
        return ratio if self.higher_is_better else -ratio


@dataclasses.dataclass
class Conditioned:
    """One figure measured under each statistics condition (and, for drains, two ways).

    ``figures[measure]`` lists the figure under each condition, in the order run. The target
    is judged on the worst condition of the first measure: users get whatever statistics
    their tables have.
    """

    workload: str
    label: str
    figures: dict[str, list[Figure]]
    target: str = ""
    check: Callable[[Figure], bool] | None = None
    note: str = ""
    #: For drains: every condition's ratio must be at least this share of the ``fresh``
    #: condition's (issue #15: no drain below 0.8 of itself on a fresh table).
    steady: float | None = None
    #: Per condition: the median start-up and write-back seconds, autovacuum runs, ...
    details: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def measures(self) -> list[str]:
        return list(self.figures)

    def best(self, measure: str | None = None) -> Figure:
        return max(self.figures[measure or self.measures[0]], key=Figure.goodness)

    def worst(self, measure: str | None = None) -> Figure:
        return min(self.figures[measure or self.measures[0]], key=Figure.goodness)

    @property
    def met(self) -> bool | None:
        verdicts = []
        if self.check is not None:
            verdicts.append(self.check(self.worst()))
        if self.steady is not None:
            verdicts.append(self.steady_met())
        return all(verdicts) if verdicts else None

    def steady_met(self) -> bool:
        """Whether the worst condition keeps ``steady`` of the fresh condition's ratio."""
        figures = self.figures[self.measures[0]]
        fresh = next((f for f in figures if f.condition == "fresh"), None)
        if fresh is None or self.steady is None:
            return True
        return self.worst().ratios.median >= self.steady * fresh.ratios.median


@dataclasses.dataclass
class Results:
    figures: list[Figure] = dataclasses.field(default_factory=list)
    #: Figures measured under each statistics condition (drains, W5's claims).
    conditioned: list[Conditioned] = dataclasses.field(default_factory=list)
    #: name -> list of (seconds, jobs finished in that instant) for the throughput plot.
    series: dict[str, list[tuple[float, int]]] = dataclasses.field(default_factory=dict)
    #: name -> latencies in seconds, for the latency plot.
    latencies: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def add_conditioned(self, group: Conditioned) -> Conditioned:
        self.conditioned.append(group)
        return group


def median_or_zero(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0
