"""The shop's own executor: a thread executor that gives jobs the shop's region.

Chancy 0.26 documents ``Executor.get_function_and_kwargs`` as the place to inject
application-level dependencies; a queue names this class by its import path.
"""

import inspect

from chancy.executors.thread import ThreadedExecutor

REGION = "eu-west"


class RegionExecutor(ThreadedExecutor):
    @classmethod
    def get_function_and_kwargs(cls, job):
        func, kwargs = super().get_function_and_kwargs(job)
        if "region" in inspect.signature(func).parameters:
            kwargs.setdefault("region", REGION)
        return func, kwargs
