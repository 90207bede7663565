"""The monitor page: the admin's look, staff only; ``monitor.js`` keeps it live."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from .consumers import DEFAULT_INTERVAL
from .routing import WEBSOCKET_PATH


@staff_member_required
def monitor(request: HttpRequest) -> HttpResponse:
    """The live monitor; the WebSocket URL is relative to the host the page came from."""
    context = {
        **admin.site.each_context(request),
        "title": "Live monitor",
        "ws_path": "/" + WEBSOCKET_PATH,
        "interval": DEFAULT_INTERVAL,
    }
    return TemplateResponse(request, "repid_django/monitor.html", context)
