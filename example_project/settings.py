"""Settings of the example site.

Every value can be overridden from the environment (or a ``.env`` file beside ``manage.py``)
through django-environ, e.g. ``DJANGO_DEBUG=false`` or ``REPID_BROKER_URL=redis://host:6379/0``.
With no broker URL, repid_django starts an embedded Redis server in the project folder.
"""

from __future__ import annotations

from pathlib import Path

import environ

PROJECT_DIR = Path(__file__).resolve().parent
BASE_DIR = PROJECT_DIR.parent
"""The folder of ``manage.py``; the embedded Redis lives in ``BASE_DIR / ".repid"``."""

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG: bool = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY: str = env.str(
    "DJANGO_SECRET_KEY", default="django-insecure-demo-only-change-me-in-production"
)
ALLOWED_HOSTS: list[str] = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    # repid_django comes before any app that ships its own ``runworker`` (channels, daphne).
    "repid_django",
    "daphne",  # its runserver serves WebSockets too (the live monitor)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "example_project.shop",
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

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"
ASGI_APPLICATION = "example_project.asgi.application"

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

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{PROJECT_DIR / 'db.sqlite3'}"),
}
DATABASES["default"].setdefault("OPTIONS", {})
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker and the web server write the same file: wait for the lock instead of failing.
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 20)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = PROJECT_DIR / "staticfiles"

LOGIN_URL = "admin:login"

# repid_django: see README.md for every key and its default. Each key can also be set from the
# environment as REPID_<KEY> (REPID_BROKER_URL, ...). No BROKER_URL: the embedded Redis is used.
REPID: dict[str, object] = {
    "CONCURRENCY": 20,
    "RESULT_TTL": 7 * 86_400.0,
    # Periodic schedules: every runworker fires them, each tick once in all (no beat process).
    # They show in the admin under Schedules, where they can be disabled or run at once.
    "SCHEDULES": {
        "sales-report": {"actor": "sales_report", "cron": "* * * * *"},  # every minute
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "repid_django": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", "INFO")},
        "example_project": {"handlers": ["console"], "level": "INFO"},
    },
}
