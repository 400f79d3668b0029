"""Settings of the Django example project (tests/django runs it on the test server).

``CHANCY_DSN`` (or ``CHANCY_TEST_DSN``) names the PostgreSQL database.
"""

from __future__ import annotations

import os

from psycopg.conninfo import conninfo_to_dict

_dsn = conninfo_to_dict(
    os.environ.get("CHANCY_DSN")
    or os.environ.get("CHANCY_TEST_DSN")
    or "postgresql://postgres@127.0.0.1:5432/postgres"
)

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _dsn.get("dbname", "postgres"),
        "USER": _dsn.get("user", "postgres"),
        "PASSWORD": _dsn.get("password", ""),
        "HOST": _dsn.get("host", ""),
        "PORT": _dsn.get("port", ""),
    }
}
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_tasks",
    # Chancy 0.26's apps: admin pages and models over chancy's tables.
    "chancy.contrib.django",
    "chancy.plugins.cron.django",
    "chancy.plugins.workflow.django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
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
]
ROOT_URLCONF = "examples.django_app.urls"
SECRET_KEY = "example-only-not-secret"
ALLOWED_HOSTS = ["testserver", "localhost"]
USE_TZ = True
CHANCY_PREFIX = "chancy_"
TASKS = {
    "default": {
        "BACKEND": "chancy.contrib.django.tasks.ChancyTaskBackend",
        "QUEUES": ["default", "reports"],
    }
}
