"""A per-executor memo of job functions, so the hot path imports and inspects each one once.

``Executor.get_function_and_kwargs`` imports the function and ``check_kwargs`` binds the
kwargs against its signature, which costs more than a no-op job itself when done for every
run. Whether kwargs bind depends only on the function and the kwargs' names, so after one
successful call for a (function path, kwargs names) pair the answer is reused.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from chancy.executors.base import Executor, check_kwargs
from chancy.job import QueuedJob

_MAX_ENTRIES = 2048

GetFunction = Callable[[QueuedJob], tuple[Callable[..., Any], dict[str, Any]]]


def is_async_callable(func: Any) -> bool:
    """True for ``async def`` functions, partials of them and objects with an async __call__."""
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - we want the method itself
    return call is not None and not inspect.isroutine(func) and inspect.iscoroutinefunction(call)


class FunctionCache:
    """Resolves a job's function and kwargs, remembering each successful resolution.

    Caching is only safe while ``get_function_and_kwargs`` is the base implementation: an
    executor subclass that overrides it may decide per job, so it is then called every time.
    """

    __slots__ = ("_cache", "_cacheable", "_get")

    def __init__(
        self, get_function_and_kwargs: GetFunction = Executor.get_function_and_kwargs
    ) -> None:
        self._get = get_function_and_kwargs
        self._cacheable = get_function_and_kwargs is Executor.get_function_and_kwargs
        # (func path, kwargs names) -> (function, is async, names given the running job)
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[Any, bool, tuple[str, ...]]] = {}

    def cached(
        self, func: str, kwargs: dict[str, Any]
    ) -> tuple[Callable[..., Any], bool, tuple[str, ...]] | None:
        """(function, is async, names given the running job) if resolved before, else None."""
        return self._cache.get((func, tuple(kwargs)))

    def resolve(self, job: QueuedJob) -> tuple[Callable[..., Any], dict[str, Any], bool, bool]:
        """Return (function, kwargs, is async, whether the kwargs hold the job itself).

        Raises ``JobFailedError`` when the function cannot be imported
        (``get_function_and_kwargs``) or the kwargs it returns do not fit it
        (``check_kwargs``).
        """
        given = job.kwargs or {}
        key = (job.func, tuple(given))
        hit = self._cache.get(key)
        if hit is not None:
            func, is_async, injected = hit
            kwargs = dict(given)
            for name in injected:
                kwargs[name] = job
            return func, kwargs, is_async, bool(injected)
        func, kwargs = self._get(job)
        check_kwargs(job, func, kwargs)
        injected = tuple(name for name, value in kwargs.items() if value is job)
        is_async = is_async_callable(func)
        if self._cacheable:
            if len(self._cache) >= _MAX_ENTRIES:
                self._cache.clear()
            self._cache[key] = (func, is_async, injected)
        return func, kwargs, is_async, bool(injected)
