"""Django integration (extra ``django``): chancy on Django's database and transactions.

::

    # settings.py
    CHANCY_PREFIX = "chancy_"          # optional
    TASKS = {"default": {"BACKEND": "chancy.contrib.django.backend.ChancyBackend"}}

    # a view
    from django.db import transaction
    from chancy.contrib.django import push

    with transaction.atomic():
        order = Order.objects.create(...)
        push(ship.job.with_kwargs(order_id=order.pk))   # exists only if the block commits

``get_chancy()`` makes the ``Chancy`` for a ``DATABASES`` entry (``Chancy(settings.DATABASES
["default"])`` works too). ``push`` writes through Django's own connection, inside Django's
current transaction, with the same SQL as ``Chancy.sync_push_ex``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from chancy.app import Chancy
from chancy.errors import ConfigurationError
from chancy.job import Job, Reference

__all__ = ["database_settings", "django_cursor", "get_chancy", "push"]

_apps: dict[tuple[str, str], Chancy] = {}


def _settings() -> Any:
    try:
        from django.conf import settings
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise ConfigurationError(
            "chancy.contrib.django needs Django: pip install 'chancy[django]'"
        ) from exc
    return settings


def get_chancy(using: str = "default", **options: Any) -> Chancy:
    """The ``Chancy`` for the ``DATABASES[using]`` entry (made once per alias and prefix).

    The prefix comes from ``settings.CHANCY_PREFIX`` (default ``chancy_``) unless given.
    """
    settings = _settings()
    database = database_settings(using)
    prefix = options.pop("prefix", getattr(settings, "CHANCY_PREFIX", "chancy_"))
    key = (using, prefix)
    if key not in _apps or options:
        _apps[key] = Chancy(database, prefix=prefix, **options)
    return _apps[key]


def database_settings(using: str = "default") -> dict[str, Any]:
    """The ``DATABASES[using]`` entry, refused with a clear error unless it is PostgreSQL."""
    database: dict[str, Any] = _settings().DATABASES[using]
    engine = database.get("ENGINE", "")
    if "postgresql" not in engine:
        raise ConfigurationError(
            f"DATABASES[{using!r}] uses {engine!r}; chancy needs PostgreSQL"
            " (django.db.backends.postgresql with psycopg 3)"
        )
    return database


@contextlib.contextmanager
def django_cursor(using: str = "default") -> Iterator[Any]:
    """The psycopg cursor under Django's connection ``using``, in its current transaction."""
    from django.db import connections

    with connections[using].cursor() as wrapper:
        raw = getattr(wrapper, "cursor", wrapper)
        yield raw


def push(job: Job | Any, *, using: str = "default", chancy: Chancy | None = None) -> Reference:
    """Push ``job`` through Django's connection: inside ``transaction.atomic()`` it exists
    only if the block commits (the wake-up NOTIFY is sent at commit too)."""
    app = chancy or get_chancy(using)
    with django_cursor(using) as cursor:
        return app.sync_push_ex(cursor, job)
