"""Executors that inject a keyword argument the way Chancy 0.26 documents it.

0.26's ``Executor.get_function_and_kwargs`` is the place for application-level
dependencies: override it, call ``super()``, add kwargs. The base must not reject the
kwargs before the override has added its own. Importable by name, as process children
import their executor class.
"""

from __future__ import annotations

from typing import Any

from chancy.executors.asyncex import AsyncExecutor
from chancy.executors.process import ProcessExecutor
from chancy.executors.thread import ThreadedExecutor


def _inject(func: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    kwargs.setdefault("b", 40)
    return func, kwargs


class InjectingProcessExecutor(ProcessExecutor):
    @classmethod
    def get_function_and_kwargs(cls, job):  # type: ignore[no-untyped-def]
        return _inject(*super().get_function_and_kwargs(job))


class InjectingThreadedExecutor(ThreadedExecutor):
    @classmethod
    def get_function_and_kwargs(cls, job):  # type: ignore[no-untyped-def]
        return _inject(*super().get_function_and_kwargs(job))


class InjectingAsyncExecutor(AsyncExecutor):
    @classmethod
    def get_function_and_kwargs(cls, job):  # type: ignore[no-untyped-def]
        return _inject(*super().get_function_and_kwargs(job))


INJECTING = {
    "process": f"{__name__}.InjectingProcessExecutor",
    "thread": f"{__name__}.InjectingThreadedExecutor",
    "async": f"{__name__}.InjectingAsyncExecutor",
}
