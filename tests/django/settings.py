"""Settings for the Django tests (pytest-django).

The broker URL and key prefix come from the test fixtures (``tests/django/conftest.py`` points
``REPID`` at the session's redis-server with a unique prefix per test). A worker started as a
subprocess gets them through ``REPID_BROKER_URL`` / ``REPID_PREFIX`` and the test database through
``REPID_TEST_DB_NAME``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import environ

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "repid_django",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "tests.django.testapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tests.django.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# DATABASE_URL (django-environ's ``env.db()``) selects the database: ``make test`` runs the
# database tests a second time with ``DATABASE_URL=postgres://...`` when
# ``REPID_TEST_DATABASE_URL`` is set (.ci/run starts a PostgreSQL for it). Without it, SQLite:
# a file (not :memory:) so that a worker subprocess can share the test database.
_TEST_DB = os.environ.get("REPID_TEST_DB_NAME")
_DATABASE_URL = os.environ.get("DATABASE_URL")
if _DATABASE_URL:
    _default: dict[str, Any] = environ.Env.db_url_config(_DATABASE_URL)
    # Several runs may share one server: each process has its own test database.
    _test_name = _TEST_DB or f"test_{_default['NAME']}_{os.getpid()}"
    _default["NAME"] = _TEST_DB or _default["NAME"]
    _default["TEST"] = {"NAME": _test_name}
else:
    _default = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _TEST_DB or str(BASE_DIR / "db.sqlite3"),
        "OPTIONS": {"timeout": 20},
        "TEST": {"NAME": _TEST_DB or str(BASE_DIR / f"test-{os.getpid()}.sqlite3")},
    }
DATABASES = {
    "default": _default,
    # A second alias, for enqueue-on-commit on the right database.
    "other": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(BASE_DIR / "other.sqlite3"),
        "TEST": {"NAME": str(BASE_DIR / f"test-other-{os.getpid()}.sqlite3")},
    },
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"

REPID = {
    "BROKER_URL": os.environ.get("REPID_TEST_REDIS_URL"),
    "PREFIX": "repid-test",
    "CONCURRENCY": 20,
    "GRACEFUL_SHUTDOWN_TIME": 5.0,
    "LEASE_TTL": 10.0,
    "REAPER_INTERVAL": 1.0,
    "MIRROR": True,
    "MIRROR_FLUSH_INTERVAL": 0.05,
}

TASKS = {
    "default": {
        "BACKEND": "repid_django.backend.RepidTaskBackend",
        "QUEUES": ["default", "other"],
    }
}
