"""URLs of the Django tests: the admin and small views that enqueue jobs."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from .testapp import views

urlpatterns = [
    path("admin/repid_django/monitor/", include("repid_django.monitor.urls")),
    path("admin/", admin.site.urls),
    path("enqueue/sync/", views.enqueue_sync, name="enqueue-sync"),
    path("enqueue/async/", views.enqueue_async, name="enqueue-async"),
    path("enqueue/on-commit/", views.enqueue_on_commit_view, name="enqueue-on-commit"),
]
