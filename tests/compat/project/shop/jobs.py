"""The shop's jobs, written as Chancy 0.26's documentation writes them.

No ``from __future__ import annotations`` here: Chancy 0.26 finds the job-context parameter by
its annotation object (``issubclass(annotation, QueuedJob)``), so it must not be a string.
"""

import asyncio
import os
import time

from chancy import Limit, QueuedJob, job


# -- emails: an async queue -------------------------------------------------------------------
@job(queue="emails")
async def send_receipt(*, order_id: int, email: str) -> str:
    await asyncio.sleep(0.01)
    return f"receipt {order_id} -> {email}"


# -- images: a process queue (CPU work away from the worker's event loop) ------------------------
@job(queue="images", limits=[Limit(Limit.Type.TIME, 30)])
def make_thumbnail(*, order_id: int, size: int, context: QueuedJob) -> dict:
    checksum = sum(i * i for i in range(size)) % 9973
    # Job context: meta set here is saved with the job when it finishes.
    context.meta["thumbnail"] = {"size": size, "checksum": checksum}
    return {"order_id": order_id, "checksum": checksum, "pid": os.getpid()}


@job(queue="images", limits=[Limit(Limit.Type.MEMORY, 1024 * 2**20)])
def make_poster(*, order_id: int, megabytes: int) -> int:
    # Posters are big: more than the 1 GiB this job may use.
    return len(bytearray(megabytes * 2**20))


@job(queue="images")
def check_image(*, order_id: int, width: int) -> int:
    if width <= 0:
        raise ValueError(f"order {order_id}: corrupt image (width {width})")
    return width


@job(queue="images", limits=[Limit(Limit.Type.TIME, 1)])
def make_huge_thumbnail(*, order_id: int) -> None:
    # Far longer than its one-second time limit: the executor stops it.
    time.sleep(30)


# -- payments: a threaded queue run by the shop's own executor -----------------------------------
@job(queue="payments", max_attempts=3)
def charge_card(*, order_id: int, amount: int, region: str, job: QueuedJob) -> str:
    # The card processor is flaky: the first two attempts fail.
    if job.attempts < 2:
        raise ConnectionError(f"card processor timed out (attempt {job.attempts})")
    return f"charged {amount} for order {order_id} in {region}"


@job(queue="payments", max_attempts=2)
def refund(*, order_id: int, region: str) -> None:
    raise ValueError(f"order {order_id} cannot be refunded in {region}")


# -- fulfilment: workflow steps on an async queue ------------------------------------------------
@job(queue="fulfilment")
async def reserve_stock(*, order_id: int) -> str:
    return f"reserved {order_id}"


@job(queue="fulfilment")
async def pack_parcel(*, order_id: int) -> str:
    return f"packed {order_id}"


@job(queue="fulfilment")
async def print_label(*, order_id: int) -> str:
    return f"label {order_id}"


@job(queue="fulfilment")
async def ship_parcel(*, order_id: int) -> str:
    return f"shipped {order_id}"


# -- reports: a threaded queue for cron and the nightly sequence ---------------------------------
@job(queue="reports")
def heartbeat() -> str:
    return "alive"


@job(queue="reports")
def export_sales() -> str:
    return "sales exported"


@job(queue="reports")
def compress_export() -> str:
    return "export compressed"


@job(queue="reports")
def upload_export() -> str:
    return "export uploaded"


# -- scratch: short-lived jobs the pruner removes -----------------------------------------------
@job(queue="scratch")
async def clear_cache(*, key: str) -> str:
    return f"cleared {key}"


# -- orders: a job queued by a database trigger (the Trigger plugin) -----------------------------
@job(queue="emails")
async def order_placed(*, context: QueuedJob) -> str:
    trigger = context.meta["trigger"]
    return f"{trigger['operation']} on {trigger['table_name']}"


# -- newsletters: one at a time, most important first -------------------------------------------
@job(queue="newsletters")
async def send_newsletter(*, edition: str) -> str:
    return edition


# -- gpu: a queue only workers tagged has=gpu serve (the shop's worker is not one) ---------------
@job(queue="gpu")
def upscale(*, order_id: int) -> None:
    pass
