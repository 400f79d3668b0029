"""SentryPlugin: job exceptions reach Sentry's transport with the job's tags."""

from __future__ import annotations

from typing import Any

import pytest

from chancy import Chancy, Job, Queue, Worker

sentry_sdk = pytest.importorskip("sentry_sdk", reason="sentry-sdk is not installed")

from sentry_sdk.transport import Transport  # noqa: E402

from chancy.plugins.sentry import SentryPlugin  # noqa: E402

ASYNC = Chancy.Executor.Async


class Capture(Transport):
    """A transport that keeps events instead of sending them."""

    events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Any) -> None:
        event = envelope.get_event()
        if event is not None:
            type(self).events.append(event)


async def test_job_exceptions_are_reported_with_tags(chancy: Chancy, make_app: Any) -> None:
    Capture.events = []
    app = make_app(SentryPlugin())
    await app.declare(Queue("default", tags={"^nobody$"}))
    await app.declare(Queue("s", executor=ASYNC, polling_interval=0.05))
    sentry_sdk.init(
        dsn="https://public@sentry.invalid/1",
        transport=Capture,
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    try:
        async with Worker(app, register_signal_handlers=False) as worker:
            failing = await app.push(
                Job(func="tests.plugins.jobs.always_fails", queue="s", max_attempts=2)
            )
            fine = await app.push(Job(func="tests.plugins.jobs.noop", queue="s"))
            retried = await app.push(
                Job(func="tests.plugins.jobs.retry_in", queue="s", kwargs={"seconds": 0})
            )
            await app.wait_for_jobs([failing, fine, retried], timeout=20)
        sentry_sdk.flush()
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)
    events = Capture.events
    # Two failed attempts of the failing job; nothing for the success or the Retry request.
    assert len(events) == 2, events
    for attempt, event in enumerate(events):
        tags = event["tags"]
        assert tags["chancy.job_id"] == str(failing.identifier)
        assert tags["chancy.func"] == "tests.plugins.jobs.always_fails"
        assert tags["chancy.queue"] == "s"
        assert tags["chancy.worker_id"] == worker.worker_id
        assert tags["chancy.attempt"] == str(attempt)
        [exc] = event["exception"]["values"]
        assert exc["type"] == "RuntimeError" and "always fails" in exc["value"]
    assert [e["tags"]["chancy.state"] for e in events] == ["retrying", "failed"]


def test_a_missing_sdk_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "sentry_sdk", None)
    with pytest.raises(ValueError, match="pip install 'chancy\\[sentry\\]'"):
        SentryPlugin()
