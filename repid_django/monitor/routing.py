"""WebSocket routes of the monitor, and the ready-made ASGI app for a project's ``asgi.py``::

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

django_app = get_asgi_application()  # first: it sets Django up

from repid_django.monitor.routing import websocket_application

application = ProtocolTypeRouter(
    {"http": django_app, "websocket": websocket_application()}
)
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path

from .consumers import MonitorConsumer

__all__ = ["WEBSOCKET_PATH", "websocket_application", "websocket_urlpatterns"]

WEBSOCKET_PATH = "ws/repid/monitor/"

websocket_urlpatterns: list[URLPattern] = [
    path(WEBSOCKET_PATH, MonitorConsumer.as_asgi(), name="repid-monitor-ws"),
]


def websocket_application(patterns: list[URLPattern] | None = None) -> Any:
    """The monitor's WebSocket routes behind the session login and an Origin check
    (``ALLOWED_HOSTS``), so another site cannot open the socket with the user's cookie."""
    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter
    from channels.security.websocket import AllowedHostsOriginValidator

    return AllowedHostsOriginValidator(
        AuthMiddlewareStack(URLRouter(patterns or websocket_urlpatterns))
    )
