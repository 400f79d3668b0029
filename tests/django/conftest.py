"""Django configured for these tests only, on the test server (CHANCY_TEST_DSN or embedded).

Configured when this directory's tests are collected; nothing else in the suite uses Django.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from psycopg.conninfo import conninfo_to_dict

pytest.importorskip("django")
pytest.importorskip("django_tasks")

import django
from django.conf import settings


def _database() -> dict[str, object]:
    dsn = os.environ.get("CHANCY_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    info = conninfo_to_dict(dsn)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": info.get("dbname", "postgres"),
        "USER": info.get("user", "postgres"),
        "PASSWORD": info.get("password", ""),
        "HOST": info.get("host", ""),
        "PORT": info.get("port", ""),
    }


if not settings.configured:
    settings.configure(
        DATABASES={"default": _database()},
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django_tasks",
            "chancy.contrib.django",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        ROOT_URLCONF="tests.django.urls",
        SECRET_KEY="tests-only-not-secret",
        ALLOWED_HOSTS=["testserver"],
        TASKS={
            "default": {
                "BACKEND": "chancy.contrib.django.tasks.ChancyTaskBackend",
                "QUEUES": ["default", "reports"],
            }
        },
        USE_TZ=True,
        CHANCY_PREFIX="chancy_",
    )
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
