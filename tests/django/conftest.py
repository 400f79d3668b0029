"""Django configured for these tests only: the example project (examples/django_app) on the
test server. Configured when this directory's tests are collected; nothing else in the suite
uses Django.

The server is the suite's: CHANCY_TEST_DSN, else the embedded PostgreSQL (attached here, as
the session's ``dsn`` fixture attaches to it too), never a guess at 127.0.0.1:5432. Django's
test database is named after this process, so two test sessions sharing a server never drop
each other's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

pytest.importorskip("django")
pytest.importorskip("django_tasks")

import django
from django.conf import settings

if not settings.configured:
    # The example project's settings (examples/django_app), as DJANGO_SETTINGS_MODULE would.
    from examples.django_app import settings as project

    dsn = os.environ.get("CHANCY_TEST_DSN")
    if not dsn:
        from chancy import embedded

        _server = embedded.start()  # detached at exit
        dsn = _server.dsn
    params: dict[str, Any] = conninfo_to_dict(dsn)
    values = {name: getattr(project, name) for name in dir(project) if name.isupper()}
    values["DATABASES"] = {
        "default": {
            **values["DATABASES"]["default"],
            "NAME": params.get("dbname", "postgres"),
            "USER": params.get("user", "postgres"),
            "PASSWORD": params.get("password", ""),
            "HOST": params.get("host", ""),
            "PORT": params.get("port", ""),
            "TEST": {"NAME": f"test_chancy_{os.getpid()}"},
        }
    }
    settings.configure(**values)
    django.setup()


@pytest.fixture
def django_prefix(prefix: str) -> Iterator[str]:
    """The test's prefix, as Django's settings (the tasks backend reads CHANCY_PREFIX)."""
    from chancy.contrib import django as contrib

    old = settings.CHANCY_PREFIX
    settings.CHANCY_PREFIX = prefix
    contrib._apps.clear()
    try:
        yield prefix
    finally:
        settings.CHANCY_PREFIX = old
        contrib._apps.clear()
