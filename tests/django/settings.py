"""Settings for the Django tests (pytest-django).

The broker URL and key prefix come from the test fixtures (``tests/django/conftest.py`` points
``REPID`` at the session's redis-server with a unique prefix per test). A worker started as a
subprocess gets them through ``REPID_BROKER_URL`` / ``REPID_PREFIX`` and the test database through
``REPID_TEST_DB_NAME``.
"""

from __future__ import annotations

import os
from pathlib import Path

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

# A file (not :memory:) so that a worker subprocess can share the test database.
_TEST_DB = os.environ.get("REPID_TEST_DB_NAME")
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _TEST_DB or str(BASE_DIR / "db.sqlite3"),
        "OPTIONS": {"timeout": 20},
        "TEST": {"NAME": _TEST_DB or str(BASE_DIR / f"test-{os.getpid()}.sqlite3")},
    },
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
