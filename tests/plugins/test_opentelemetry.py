"""OpenTelemetry: push, claim and run spans, linked in one process and across processes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, Worker
from tests.conftest import drop_prefix, eventually

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from chancy.plugins.opentelemetry import META_KEY, OpenTelemetry
from tests.plugins.otel_jobs import describe, start_worker

ROOT = Path(__file__).resolve().parents[2]
ASYNC = Chancy.Executor.Async


def tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def spans(exporter: InMemorySpanExporter) -> list[dict[str, Any]]:
    return [describe(s) for s in exporter.get_finished_spans()]


async def test_push_claim_and_run_spans_share_the_pusher_s_trace(dsn: str, prefix: str) -> None:
    provider, exporter = tracing()
    tracer = provider.get_tracer("test")
    app = Chancy(
        dsn,
        prefix=prefix,
        plugins=[OpenTelemetry(provider)],
        no_default_plugins=True,
        max_connection_pool_size=2,
    )
    try:
        async with app:
            await app.migrate()
            await app.declare(Queue("t", executor=ASYNC, polling_interval=0.2))
            with tracer.start_as_current_span("request"):
                ok = await app.push(Job(func="tests.plugins.otel_jobs.ok", queue="t"))
            refs = [
                r
                async for b in app.push_many(
                    [Job(func="tests.plugins.otel_jobs.boom", queue="t")] * 2
                )
                for r in b
            ]
            stored = await app.get_job(ok)
            assert stored is not None and "traceparent" in stored.meta[META_KEY]
            async with Worker(app, register_signal_handlers=False):
                await app.wait_for_jobs([ok, *refs], timeout=15, interval=0.1)

                def ended() -> bool:
                    return (
                        sum(1 for s in spans(exporter) if s["name"].startswith("chancy.run")) == 3
                    )

                await eventually(ended)
            await app.migrate(to_version=0)
    finally:
        drop_prefix(dsn, prefix)
    found = spans(exporter)
    request = next(s for s in found if s["name"] == "request")
    pushes = [s for s in found if s["name"] == "chancy.push t"]
    assert len(pushes) == 2 and all(p["kind"] == "PRODUCER" for p in pushes)
    push = next(p for p in pushes if p["parent_id"] == request["span_id"])
    assert push["trace_id"] == request["trace_id"]
    batch = next(p for p in pushes if p is not push)
    assert batch["attributes"]["chancy.batch.size"] == 2
    by_job = {
        s["attributes"].get("chancy.job.id"): s for s in found if s["name"].startswith("chancy.run")
    }
    run = by_job[str(ok.identifier)]
    claim = next(
        s
        for s in found
        if s["name"] == "chancy.claim t" and s["attributes"]["chancy.job.id"] == str(ok.identifier)
    )
    for span in (run, claim):
        assert span["kind"] == "CONSUMER"
        assert span["trace_id"] == push["trace_id"] and span["parent_id"] == push["span_id"]
    assert run["attributes"]["chancy.job.state"] == "succeeded" and run["status"] == "UNSET"
    failed = by_job[str(refs[0].identifier)]
    assert failed["status"] == "ERROR" and failed["trace_id"] == batch["trace_id"]
    assert failed["attributes"]["chancy.job.state"] == "failed"


async def test_a_run_in_another_process_joins_the_pusher_s_trace(
    dsn: str, prefix: str, tmp_path: Path
) -> None:
    provider, exporter = tracing()
    tracer = provider.get_tracer("test")
    app = Chancy(
        dsn,
        prefix=prefix,
        plugins=[OpenTelemetry(provider)],
        no_default_plugins=True,
        max_connection_pool_size=2,
    )
    out = tmp_path / "worker-spans.jsonl"
    try:
        async with app:
            await app.migrate()
            await app.declare(Queue("t", executor=ASYNC, polling_interval=0.2))
            proc = start_worker(dsn, prefix, str(out), str(ROOT))
            try:
                with tracer.start_as_current_span("request"):
                    ref = await app.push(Job(func="tests.plugins.otel_jobs.ok", queue="t"))
                job = await app.wait_for_job(ref, timeout=20, interval=0.1)
                assert job is not None and str(job.state) == "succeeded"
            finally:
                proc.send_signal(signal.SIGTERM)
                output = proc.communicate(timeout=30)[0].decode(errors="replace")
            assert proc.returncode == 0, output
            await app.migrate(to_version=0)
    finally:
        drop_prefix(dsn, prefix)
    push = next(s for s in spans(exporter) if s["name"] == "chancy.push t")
    remote = [json.loads(line) for line in out.read_text().splitlines()]
    run = next(s for s in remote if s["name"] == "chancy.run tests.plugins.otel_jobs.ok")
    claim = next(s for s in remote if s["name"] == "chancy.claim t")
    assert run["pid"] != os.getpid()
    for span in (run, claim):
        assert span["trace_id"] == push["trace_id"]
        assert span["parent_id"] == push["span_id"]
