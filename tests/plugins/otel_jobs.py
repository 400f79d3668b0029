"""Jobs and a worker process for the OpenTelemetry tests."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys


async def ok() -> str:
    return "ok"


async def boom() -> None:
    raise RuntimeError("boom")


async def serve(dsn: str, prefix: str, out: str) -> None:
    """A worker whose finished spans are written to ``out`` (JSON lines) when it stops."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from chancy import Chancy, Worker
    from chancy.plugins.opentelemetry import OpenTelemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = Chancy(
        dsn,
        prefix=prefix,
        plugins=[OpenTelemetry(provider)],
        no_default_plugins=True,
        max_connection_pool_size=2,
    )
    async with app, Worker(app, shutdown_timeout=5) as worker:
        print("ready", flush=True)
        await worker.wait_for_shutdown()
    write_spans(out, [describe(span) for span in exporter.get_finished_spans()])


def write_spans(path: str, found: list[dict[str, object]]) -> None:
    with open(path, "w") as f:
        for span in found:
            f.write(json.dumps(span) + "\n")


def describe(span: object) -> dict[str, object]:
    ctx = span.context  # type: ignore[attr-defined]
    parent = span.parent  # type: ignore[attr-defined]
    return {
        "name": span.name,  # type: ignore[attr-defined]
        "kind": span.kind.name,  # type: ignore[attr-defined]
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
        "attributes": dict(span.attributes or {}),  # type: ignore[attr-defined]
        "status": span.status.status_code.name,  # type: ignore[attr-defined]
        "pid": os.getpid(),
    }


def start_worker(dsn: str, prefix: str, out: str, cwd: str) -> subprocess.Popen[bytes]:
    """The worker process; returns once it printed ``ready``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANCY_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.plugins.otel_jobs", dsn, prefix, out],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == b"ready":
            return proc
    raise AssertionError(f"the worker exited with {proc.wait()} before it was ready")


if __name__ == "__main__":
    asyncio.run(serve(*sys.argv[1:4]))
