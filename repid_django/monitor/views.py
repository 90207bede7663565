"""The monitor page: the admin's look, for active staff with the app's view permission
(:data:`~repid_django.monitor.access.VIEW_PERMISSION`); ``monitor.js`` keeps it live."""

from __future__ import annotations

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from .access import VIEW_PERMISSION, may_watch
from .consumers import DEFAULT_INTERVAL
from .routing import WEBSOCKET_PATH


@staff_member_required
def monitor(request: HttpRequest) -> HttpResponse:
    """The live monitor; the WebSocket URL is relative to the host the page came from."""
    if not may_watch(request.user):
        raise PermissionDenied(f"the live monitor needs the {VIEW_PERMISSION!r} permission")
    context = {
        **admin.site.each_context(request),
        "title": "Live monitor",
        "app_name": apps.get_app_config("repid_django").verbose_name,
        "ws_path": "/" + WEBSOCKET_PATH,
        "interval": DEFAULT_INTERVAL,
    }
    return TemplateResponse(request, "repid_django/monitor.html", context)
