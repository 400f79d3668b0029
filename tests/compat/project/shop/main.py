"""Run the shop once, end to end, and print what happened.

    python -m shop.main DSN PREFIX

One worker in this process serves every queue while the script pushes orders, schedules a
cron job, runs a workflow and a sequence, and waits for all of it. The last line printed is
``REPORT`` followed by a JSON summary.
"""

import asyncio
import importlib.metadata
import io
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta

from psycopg import sql

import chancy as chancy_package
import shop.jobs
from chancy import Chancy, Queue, QueuedJob, Reference, Worker
from chancy.plugins.cron import Cron
from chancy.plugins.trigger import Trigger
from chancy.plugins.workflow import Sequence, Workflow, WorkflowPlugin
from shop import dashboard
from shop.app import make_chancy
from shop.jobs import (
    charge_card,
    check_image,
    clear_cache,
    compress_export,
    export_sales,
    heartbeat,
    make_huge_thumbnail,
    make_poster,
    make_thumbnail,
    order_placed,
    pack_parcel,
    print_label,
    refund,
    reserve_stock,
    send_newsletter,
    send_receipt,
    ship_parcel,
    upload_export,
    upscale,
)
from shop.plugins import AuditPlugin, ShopRetry

#: The shop's job functions (by name), for the audit trail.
SHOP_JOBS = {
    name for name, value in vars(shop.jobs).items() if callable(value) and hasattr(value, "job")
}
#: How long the script waits for any one thing before giving up.
PATIENCE = 45
#: Retry quickly: the shop's RetryPlugin waits ``backoff`` seconds between attempts.
RETRY = {"retry_settings": {"backoff": 0.2}}


async def declare_queues(chancy: Chancy) -> None:
    await chancy.declare(
        Queue("emails", concurrency=5, executor=Chancy.Executor.Async, polling_interval=1)
    )
    await chancy.declare(
        Queue(
            "images",
            concurrency=2,
            executor=Chancy.Executor.Process,
            executor_options={"maximum_jobs_per_worker": 10},
            polling_interval=1,
            tags={r"python=3\.\d+\.\d+"},
        )
    )
    await chancy.declare(
        Queue(
            "payments",
            concurrency=2,
            executor="shop.executors.RegionExecutor",
            polling_interval=1,
            tags={"role=shop"},
        )
    )
    await chancy.declare(Queue("fulfilment", executor=Chancy.Executor.Async, polling_interval=1))
    await chancy.declare(
        Queue("reports", concurrency=2, executor=Chancy.Executor.Threaded, polling_interval=1)
    )
    await chancy.declare(Queue("scratch", executor=Chancy.Executor.Async, polling_interval=1))
    await chancy.declare(
        Queue("newsletters", concurrency=1, executor=Chancy.Executor.Async, polling_interval=1)
    )
    await chancy.declare(Queue("gpu", tags={"has=gpu"}, polling_interval=1))


async def until(check, what: str):
    """Poll ``check`` (a coroutine function) until it returns something truthy."""
    deadline = time.monotonic() + PATIENCE
    while not (value := await check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await asyncio.sleep(0.2)
    return value


def summary(job: QueuedJob | None) -> dict | None:
    if job is None:
        return None
    return {
        "state": job.state.value,
        "attempts": job.attempts,
        "errors": len(job.errors),
        "queue": job.queue,
        "meta": {k: v for k, v in job.meta.items() if k != "retry_settings"},
    }


async def introspect(chancy: Chancy, worker: Worker, workflow_id: str) -> dict:
    workflow = await WorkflowPlugin.fetch_workflow(chancy, id_=workflow_id)
    dot = io.StringIO()
    WorkflowPlugin.generate_dot(workflow, dot)
    await chancy.pause_queue("newsletters")
    paused = (await chancy.get_queue("newsletters")).state
    await chancy.resume_queue("newsletters")
    resumed = (await chancy.get_queue("newsletters")).state
    packed = charge_card.job.with_kwargs(order_id=1, amount=2).with_max_attempts(3)
    return {
        "served": sorted(queue.name for queue in worker),
        "count": len(worker),
        "emails_served": "emails" in worker,
        "gpu_served": "gpu" in worker,
        "payments_executor": worker["payments"].executor,
        "workers": [w["worker_id"] for w in await chancy.get_all_workers()],
        "queues": sorted(q.name for q in await chancy.get_all_queues()),
        "workflow_complete": workflow.is_complete,
        "dot_edges": dot.getvalue().count("->"),
        "pause": [paused.value, resumed.value],
        "pack_round_trip": type(packed).unpack(packed.pack()) == packed,
    }


async def run_worker_process(chancy: Chancy, dsn: str, prefix: str) -> dict:
    ref = await chancy.push(send_receipt.job.with_kwargs(order_id=5001, email="bg@example.com"))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shop.worker",
        dsn,
        prefix,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        ready = await asyncio.wait_for(process.stdout.readline(), PATIENCE)
        done = await chancy.wait_for_job(ref, interval=0.2, timeout=PATIENCE)
        process.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(process.communicate(), PATIENCE)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return {
        "job": done.state.value,
        "output": [ready.decode().strip(), *rest.decode().split()],
        "exit": process.returncode,
    }


async def run(dsn: str, prefix: str) -> dict:
    began = time.monotonic()
    audit = AuditPlugin(interval=0.5)
    report: dict = {
        "chancy": os.path.dirname(chancy_package.__file__),
        "version": importlib.metadata.version("chancy"),
        "main_pid": os.getpid(),
    }

    async with make_chancy(dsn, prefix, audit) as chancy:
        await chancy.migrate()
        await declare_queues(chancy)

        # A unique key: a second push while the first waits returns the same job.
        first = await chancy.push(
            send_receipt.job.with_kwargs(order_id=1001, email="ann@example.com").with_unique_key(
                "receipt-1001"
            )
        )
        again = await chancy.push(
            send_receipt.job.with_kwargs(order_id=1001, email="bob@example.com").with_unique_key(
                "receipt-1001"
            )
        )
        report["unique_key_same_job"] = first == again

        # push_many: a batch of receipts, yielded one list per batch.
        batches = [
            refs
            async for refs in chancy.push_many(
                [
                    send_receipt.job.with_kwargs(order_id=n, email=f"c{n}@example.com")
                    for n in range(2001, 2006)
                ],
                batch_size=2,
            )
        ]
        report["push_many_batches"] = [len(b) for b in batches]
        receipts = [first, *(ref for batch in batches for ref in batch)]

        refs = {
            "thumb_small": await chancy.push(make_thumbnail.job.with_kwargs(order_id=1, size=1000)),
            "thumb_large": await chancy.push(
                make_thumbnail.job.with_kwargs(order_id=2, size=200_000)
            ),
            "thumb_huge": await chancy.push(make_huge_thumbnail.job.with_kwargs(order_id=3)),
            "charge": await chancy.push(
                charge_card.job.with_kwargs(order_id=1001, amount=4200).with_meta(RETRY)
            ),
            "refund": await chancy.push(refund.job.with_kwargs(order_id=1001).with_meta(RETRY)),
            "cache": await chancy.push(clear_cache.job.with_kwargs(key="catalog")),
            "poster": await chancy.push(make_poster.job.with_kwargs(order_id=4, megabytes=2048)),
            "bad_image": await chancy.push(check_image.job.with_kwargs(order_id=5, width=0)),
            "upscale": await chancy.push(upscale.job.with_kwargs(order_id=6)),
        }
        # Priorities: on a one-at-a-time queue, the highest runs first.
        newsletters = [
            await chancy.push(send_newsletter.job.with_kwargs(edition=name).with_priority(p))
            for name, p in (("monthly", 1), ("breaking", 10), ("weekly", 5))
        ]
        # A receipt scheduled for tomorrow, cancelled before it runs.
        later = await chancy.push(
            send_receipt.job.with_kwargs(order_id=1002, email="late@example.com").with_scheduled_at(
                datetime.now(UTC) + timedelta(days=1)
            )
        )
        await chancy.cancel_job(later)
        report["cancelled"] = (await chancy.get_job(later)).state.value

        # Pushed by a Reference of its own, as a caller holding only the id would.
        refs["charge"] = Reference(str(refs["charge"].identifier))

        # Cron: every two seconds (croniter's seconds field), and a nightly export.
        await Cron.schedule(chancy, "* * * * * */2", heartbeat.job.with_unique_key("heartbeat"))
        await Cron.schedule(chancy, "0 3 * * *", export_sales.job.with_unique_key("nightly-export"))

        # Trigger: a row inserted into the shop's own orders table queues order_placed.
        orders = f"{prefix}orders"
        async with chancy.pool.connection() as conn:
            await conn.execute(
                sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, email text)").format(
                    sql.Identifier(orders)
                )
            )
        trigger_id = await Trigger.register_trigger(
            chancy, table_name=orders, operations=["INSERT"], job_template=order_placed
        )
        report["triggers"] = [t.table_name for t in (await Trigger.get_triggers(chancy)).values()]
        async with chancy.pool.connection() as conn:
            await conn.execute(
                sql.SQL("INSERT INTO {} (email) VALUES (%s)").format(sql.Identifier(orders)),
                ["ann@example.com"],
            )

        # A workflow (reserve, then pack and label in parallel, then ship) and a sequence.
        workflow = (
            Workflow("fulfil-1001")
            .add("reserve", reserve_stock.job.with_kwargs(order_id=1001))
            .add("pack", pack_parcel.job.with_kwargs(order_id=1001), ["reserve"])
            .add("label", print_label.job.with_kwargs(order_id=1001), ["reserve"])
            .add("ship", ship_parcel.job.with_kwargs(order_id=1001), ["pack", "label"])
        )
        workflow_id = await WorkflowPlugin.push(chancy, workflow)
        report["workflow_id"] = str(workflow_id)
        sequence_id = (
            await Sequence("nightly-export")
            .add(export_sales)
            .add(compress_export)
            .add(upload_export)
            .push(chancy)
        )

        worker = Worker(
            chancy,
            worker_id="shop-worker-1",
            heartbeat_poll_interval=1,
            tags={"role=shop"},
            register_signal_handlers=False,
            shutdown_timeout=15,
        )
        await worker.start()
        try:
            report["receipts"] = [
                summary(await chancy.wait_for_job(ref, interval=0.2, timeout=PATIENCE))
                for ref in receipts
            ]
            report["jobs"] = {
                name: summary(await chancy.wait_for_job(ref, interval=0.2, timeout=PATIENCE))
                for name, ref in refs.items()
                if name not in ("cache", "upscale")
            }
            await chancy.wait_for_jobs(newsletters, interval=0.2, timeout=PATIENCE)
            report["newsletters"] = [
                c["result"] for c in audit.completed.values() if c["func"] == "send_newsletter"
            ]
            done = await WorkflowPlugin.wait_for_workflow(
                chancy, workflow_id, interval=0.2, timeout=PATIENCE
            )
            report["workflow"] = {
                "state": done.state.value,
                "steps": {k: s.state.value if s.state else None for k, s in done.steps.items()},
            }
            done = await WorkflowPlugin.wait_for_workflow(
                chancy, sequence_id, interval=0.2, timeout=PATIENCE
            )
            report["sequence"] = {
                "state": done.state.value,
                "steps": {k: s.state.value if s.state else None for k, s in done.steps.items()},
            }

            async def cron_ran():
                schedule = (await Cron.get_schedules(chancy))["heartbeat"]
                runs = [c for c in audit.completed.values() if c["func"] == "heartbeat"]
                return schedule["last_run"] is not None and runs

            report["cron_runs"] = len(await until(cron_ran, "the cron job"))
            await Cron.unschedule(chancy, "heartbeat")

            async def order_handled():
                return [c for c in audit.completed.values() if c["func"] == "order_placed"]

            report["order_placed"] = [
                c["result"] for c in await until(order_handled, "the trigger")
            ]
            await Trigger.unregister_trigger(chancy, trigger_id)

            report["heartbeat_unscheduled"] = "heartbeat" not in await Cron.get_schedules(chancy)

            async def cache_job_pruned():
                return await chancy.get_job(refs["cache"]) is None

            report["cache_job_pruned"] = await until(cache_job_pruned, "the pruner")
            report["leader"] = worker.is_leader.is_set()

            async def audit_looped():
                return audit.ticks >= 3

            await until(audit_looped, "the audit plugin's loop")
            # Looking around, as an operator's script does.
            report["introspection"] = await introspect(chancy, worker, workflow_id)

            # Never served here: this worker lacks the has=gpu tag.
            report["upscale"] = summary(await chancy.get_job(refs["upscale"]))
        finally:
            await worker.stop()

        # The audit plugin's own table, written in the job updates' transactions.
        async with chancy.pool.connection() as conn:
            cursor = await conn.execute(
                sql.SQL(
                    "SELECT func, state, count(*) FROM {} GROUP BY func, state ORDER BY 1, 2"
                ).format(sql.Identifier(f"{prefix}shop_audit"))
            )
            report["audit_table"] = [
                [func.rsplit(".", 1)[-1], state, n]
                for func, state, n in await cursor.fetchall()
                if func.rsplit(".", 1)[-1] in SHOP_JOBS
            ]

        # A worker in its own process, stopped by SIGTERM as a process manager stops it.
        report["worker_process"] = await run_worker_process(chancy, dsn, prefix)

        metrics = chancy.plugins["chancy.metrics"]
        series = (await metrics.get_metrics(chancy, "shop", resolution="1min"))["series"]
        report["metrics"] = {key: metric.summary for key, metric in series.items()}

    # Only the shop's own jobs: a database shared with other code may hold others.
    order = [func for func, _ in audit.started if func in SHOP_JOBS]
    report["audit"] = {
        "worker_started": audit.worker_started,
        "worker_stopped": audit.worker_stopped,
        "ticks": audit.ticks,
        "ticks_heard": audit.ticks_heard,
        "events": sorted(audit.events),
        "wait_for_results": sorted(set(audit.waits)),
        "queues_started": sorted(audit.queues_started),
        "leaders": sorted(set(audit.leaders)),
        "updated": audit.updated,
        "order": order,
        "completed": sorted(
            (c for c in audit.completed.values() if c["func"] in SHOP_JOBS),
            key=lambda c: (c["func"], c["states"]),
        ),
    }
    report["retry_calls"] = ShopRetry.calls

    report["seconds"] = round(time.monotonic() - began, 1)
    return report


def back_office(dsn: str, prefix: str, report: dict) -> None:
    """The synchronous side, as a Django project has it: sync API and the ORM."""
    # No worker runs now: the receipt waits.
    with make_chancy(dsn, prefix, AuditPlugin()) as chancy:
        ref = chancy.sync_push(
            send_receipt.job.with_kwargs(order_id=3001, email="sync@example.com")
        )
        report["sync_push"] = chancy.sync_get_job(ref).state.value
    dashboard.setup(dsn, prefix)
    report["django"] = dashboard.overview(report["workflow_id"])


if __name__ == "__main__":
    result = asyncio.run(run(sys.argv[1], sys.argv[2]))
    back_office(sys.argv[1], sys.argv[2], result)
    print("REPORT " + json.dumps(result, default=str), flush=True)
