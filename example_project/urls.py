"""URLs of the example site: the shop at /, the admin console at /admin/ and its live
monitor at /admin/repid_django/monitor/ (before the admin's own URLs), and the Prometheus
metrics at /metrics/ (staff only by default: REPID["METRICS_AUTH"])."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/repid_django/monitor/", include("repid_django.monitor.urls")),
    path("admin/", admin.site.urls),
    path("metrics/", include("repid_django.metrics.urls")),
    path("", include("example_project.shop.urls")),
]
