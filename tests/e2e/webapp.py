"""WSGI and ASGI entry points of the test project, for real servers (gunicorn, uvicorn, Daphne).

With ``REPID_TEST_PRELOAD_TAG`` set, importing this module enqueues one job, the way a project
may enqueue at start-up: under ``gunicorn --preload`` that happens in the master process before
it forks its workers, which then enqueue on connections of their own.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django.settings")

from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
asgi_application = get_asgi_application()

if os.environ.get("REPID_TEST_PRELOAD_TAG"):
    from repid_django import Job

    Job("record", args={"tag": os.environ["REPID_TEST_PRELOAD_TAG"]}).enqueue()
