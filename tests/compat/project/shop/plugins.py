"""The shop's plugins, written against Chancy 0.26's ``Plugin`` base."""

from datetime import UTC, datetime, timedelta

from psycopg import sql

from chancy.plugin import Plugin
from chancy.plugins.retry import RetryPlugin


class ShopRetry(RetryPlugin):
    """0.26's RetryPlugin with the shop's own delay: ``backoff`` seconds, no growth."""

    #: (job function, attempts so far) for every delay computed.
    calls: list = []

    @staticmethod
    def calculate_next_run(job, retry_settings):
        ShopRetry.calls.append((job.func, job.attempts))
        return datetime.now(UTC) + timedelta(seconds=retry_settings.get("backoff", 1))


class AuditPlugin(Plugin):
    """Keeps an audit trail of the worker: its job hooks, hub events and a heartbeat loop.

    It also reports custom metrics through the worker, as 0.26's documentation shows.
    """

    def __init__(self, *, interval: float = 0.5):
        super().__init__()
        self.interval = interval
        self.ticks = 0
        self.started: list = []
        self.completed: dict = {}
        self.updated = 0
        self.queues_started: set = set()
        self.leaders: list = []
        self.worker_started = False
        self.ticks_heard: list = []
        self.events: set = set()
        self.waits: list = []
        self.worker_stopped = False

    @staticmethod
    def get_identifier() -> str:
        return "shop.audit"

    # Its own table, created by its own migrations (shop/migrations) when chancy.migrate() runs.
    def migrate_key(self):
        return "shop_audit"

    def migrate_package(self):
        return "shop.migrations"

    async def on_jobs_updated_in_transaction(self, *, worker, jobs, cursor):
        # Written in the same transaction as the job updates: both or neither.
        await cursor.executemany(
            sql.SQL("INSERT INTO {table} (job_id, func, state) VALUES (%s, %s, %s)").format(
                table=sql.Identifier(f"{worker.chancy.prefix}shop_audit")
            ),
            [(job.id, job.func, job.state.value) for job in jobs],
        )

    async def on_worker_started(self, *, worker):
        self.worker_started = True
        worker.hub.on("worker.queue.started", self._on_queue_started)
        # Renewals too: a worker's first "gained" can come before its LISTEN is up.
        worker.hub.on("leadership.gained", self._on_leadership)
        worker.hub.on("leadership.renewed", self._on_leadership)
        worker.hub.on("shop.audit.tick", self._on_tick)
        worker.hub.on_any(self._on_any)

    def _on_any(self, event):
        self.events.add(event.name)

    async def _on_queue_started(self, event):
        self.queues_started.add(event.body["queue"].name)

    def _on_tick(self, event):
        self.ticks_heard.append(event.body["ticks"])

    def _on_leadership(self, event):
        self.leaders.append(event.body["worker_id"])

    async def run(self, worker, chancy):
        while await self.sleep(self.interval):
            self.ticks += 1
            await worker.record_gauge("shop:audit:ticks", self.ticks)
            await worker.hub.emit("shop.audit.tick", {"ticks": self.ticks})
            # Anything pushed meanwhile? (a list of events, empty when none came in time)
            events = await worker.hub.wait_for(["queue.pushed"], timeout=0.05)
            self.waits.append(type(events).__name__)

    async def on_job_starting(self, *, job, worker):
        self.started.append((job.func.rsplit(".", 1)[-1], str(job.id)))
        return job

    async def on_job_completed(self, *, worker, job, exc=None, result=None):
        entry = self.completed.setdefault(
            str(job.id), {"func": job.func.rsplit(".", 1)[-1], "states": [], "result": None}
        )
        entry["states"].append(job.state.value)
        if exc is None:
            entry["result"] = result
            await worker.increment_counter("shop:jobs:succeeded", 1)
        else:
            timed_out = isinstance(exc, TimeoutError)
            if timed_out:
                entry["error"] = "timeout"
            elif isinstance(exc, MemoryError):
                entry["error"] = "out of memory"
            else:
                entry["error"] = type(exc).__name__
            await worker.increment_counter(
                "shop:jobs:timeouts" if timed_out else "shop:jobs:errors", 1
            )
        if job.func.endswith(".charge_card") and exc is None:
            await worker.record_histogram_value("shop:charged", job.kwargs["amount"])
        return job

    async def on_job_updated(self, *, worker, job):
        self.updated += 1

    async def on_worker_stopped(self, *, worker):
        self.worker_stopped = True
