"""Django configured for these tests only: the example project (examples/django_app) on the
test server. Configured when this directory's tests are collected; nothing else in the suite
uses Django.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("django")
pytest.importorskip("django_tasks")

import django
from django.conf import settings

if not settings.configured:
    # The example project's settings (examples/django_app), as DJANGO_SETTINGS_MODULE would.
    from examples.django_app import settings as project

    settings.configure(**{name: getattr(project, name) for name in dir(project) if name.isupper()})
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
