"""The Prometheus text exposition of the stored metrics."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from chancy.plugins.metrics.model import BUCKETS


def plan_rows(plan: Any) -> int:
    try:
        document = plan["QUERY PLAN"] if isinstance(plan, Mapping) else plan[0]
        if isinstance(document, str):
            import json

            document = json.loads(document)
        return int(document[0]["Plan"]["Plan Rows"])
    except (KeyError, IndexError, TypeError, ValueError):
        return 0


def _prom_name(name: str, unit: str | None = None) -> str:
    # Custom metrics carry their unit in the name, as Prometheus names do (``_bytes``).
    base = "chancy_" + "".join(c if c.isascii() and c.isalnum() else "_" for c in name)
    if unit and unit not in ("count", "number"):
        base += "_" + "".join(c if c.isascii() and c.isalnum() else "_" for c in unit)
    return base


def _prom_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_prom_label(v)}"' for k, v in pairs if v != "")
    return "{" + inner + "}" if inner else ""


def _fmt(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(float(value))


def prometheus_text(
    totals: Iterable[Mapping[str, Any]], gauges: Iterable[Mapping[str, Any]]
) -> str:
    """Render all-time rows and latest gauges in the Prometheus text format (0.0.4).

    chancy's counters become ``chancy_<name>_total`` and its histograms
    ``chancy_<name>_seconds``; custom metrics are named after their key and unit, and a custom
    histogram in a unit other than seconds has no buckets, so it is written as a summary
    (``_sum`` and ``_count``). Two keys that map to the same Prometheus name are written once
    (the first, in name order).
    """
    out: list[str] = []
    families: dict[str, tuple[str, list[Mapping[str, Any]]]] = {}
    for row in totals:
        kind, unit = row["kind"], row.get("unit")
        if kind == "counter":
            metric = _prom_name(row["name"], unit) + "_total"
        elif kind == "histogram" and row["histogram"] is not None and unit in (None, "seconds"):
            metric = _prom_name(row["name"]) + "_seconds"
            kind = "histogram"
        elif kind == "histogram":
            metric = _prom_name(row["name"], unit)
            kind = "summary"
        else:
            continue
        family = families.setdefault(metric, (kind, []))
        if family[0] == kind and (not family[1] or family[1][0]["name"] == row["name"]):
            family[1].append(row)
    for metric in sorted(families):
        kind, rows = families[metric]
        name = rows[0]["name"]
        if kind == "counter":
            out.append(f"# HELP {metric} chancy {name} (all time)")
            out.append(f"# TYPE {metric} counter")
            for row in rows:
                labels = _labels((("queue", row["queue"]), ("func", row["func"])))
                value = int(row["count"]) + float(row["total"] or 0)
                out.append(f"{metric}{labels} {_fmt(float(value))}")
        elif kind == "histogram":
            out.append(f"# HELP {metric} chancy {name} in seconds (all time)")
            out.append(f"# TYPE {metric} histogram")
            for row in rows:
                base = (("queue", row["queue"]), ("func", row["func"]))
                counts = list(row["histogram"] or [])
                cumulative = 0
                for bound, count in zip((*BUCKETS, math.inf), counts, strict=False):
                    cumulative += int(count)
                    le = "+Inf" if bound == math.inf else _fmt(float(bound))
                    out.append(f"{metric}_bucket{_labels((*base, ('le', le)))} {cumulative}")
                out.append(f"{metric}_sum{_labels(base)} {_fmt(float(row['total']))}")
                out.append(f"{metric}_count{_labels(base)} {int(row['count'])}")
        else:
            out.append(f"# HELP {metric} chancy {name} (all time)")
            out.append(f"# TYPE {metric} summary")
            for row in rows:
                base = (("queue", row["queue"]), ("func", row["func"]))
                out.append(f"{metric}_sum{_labels(base)} {_fmt(float(row['total']))}")
                out.append(f"{metric}_count{_labels(base)} {int(row['count'])}")
    gauge_rows: dict[str, list[Mapping[str, Any]]] = {}
    for row in gauges:
        metric = _prom_name(row["name"], row.get("unit"))
        rows_of = gauge_rows.setdefault(metric, [])
        if not rows_of or rows_of[0]["name"] == row["name"]:
            rows_of.append(row)
    for metric in sorted(gauge_rows):
        if metric in families:
            continue
        name = gauge_rows[metric][0]["name"]
        out.append(f"# HELP {metric} chancy {name} (last sample)")
        out.append(f"# TYPE {metric} gauge")
        for row in gauge_rows[metric]:
            labels = _labels((("queue", row["queue"]), ("func", row["func"])))
            out.append(f"{metric}{labels} {_fmt(float(row['value']))}")
    return "\n".join(out) + "\n"
