"""URLs of the metrics tests: the admin (to log in) and the metrics view."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics/", include("repid_django.metrics.urls")),
]
