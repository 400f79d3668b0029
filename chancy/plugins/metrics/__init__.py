"""The Metrics plugin (default on): see :mod:`chancy.plugins.metrics.metrics`."""

from chancy.plugins.metrics.metrics import (
    BUCKETS,
    DEFAULT_RETENTION,
    METRICS,
    RESOLUTIONS,
    Metric,
    MetricPoint,
    Metrics,
    prometheus_text,
)

__all__ = [
    "BUCKETS",
    "DEFAULT_RETENTION",
    "METRICS",
    "RESOLUTIONS",
    "Metric",
    "MetricPoint",
    "Metrics",
    "prometheus_text",
]
