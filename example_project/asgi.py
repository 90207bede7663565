"""ASGI entry point of the example site (``daphne example_project.asgi:application``).

HTTP goes to Django; WebSockets (the live monitor at ``ws/repid/monitor/``) go to Channels
behind the session login and an Origin check.
"""

from __future__ import annotations

import os

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

django_application = get_asgi_application()  # first: it sets Django up

from repid_django.monitor.routing import websocket_application  # noqa: E402

application = ProtocolTypeRouter({"http": django_application, "websocket": websocket_application()})
