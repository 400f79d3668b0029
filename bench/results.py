"""What the workloads measure, collected for the report."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
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


@dataclasses.dataclass
class Results:
    figures: list[Figure] = dataclasses.field(default_factory=list)
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
