"""The monitor page's URL; include it before the admin's own URLs::

path("admin/repid_django/monitor/", include("repid_django.monitor.urls")),
path("admin/", admin.site.urls),
"""

from __future__ import annotations

from django.urls import URLPattern, path

from . import views

app_name = "repid_monitor"

urlpatterns: list[URLPattern] = [
    path("", views.monitor, name="monitor"),
]
