"""Batches: a group of jobs with callbacks pushed once every job of the group has finished.

::

    chancy = Chancy(dsn, plugins=[BatchPlugin()])
    batch_id = await Batch.push(
        chancy, [resize.job.with_kwargs(path=p) for p in paths],
        on_success=publish.job, on_failure=alert.job, on_finish=cleanup.job,
    )
    status = await Batch.get(chancy, batch_id)   # total, counts by state, callbacks pushed

Each callback job receives ``batch_id`` (text) and ``batch_counts`` (``{"total", "succeeded",
"failed"}``) as keyword arguments. See :mod:`chancy.plugins.batch.plugin` for how the leader
closes batches exactly once.
"""

from chancy.plugins.batch.client import Batch, BatchStatus, InvalidBatchError
from chancy.plugins.batch.closing import BATCH_COUNTS_KWARG, BATCH_ID_KWARG
from chancy.plugins.batch.plugin import BatchPlugin

__all__ = [
    "BATCH_COUNTS_KWARG",
    "BATCH_ID_KWARG",
    "Batch",
    "BatchPlugin",
    "BatchStatus",
    "InvalidBatchError",
]
