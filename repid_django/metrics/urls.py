"""``path("metrics/", include("repid_django.metrics.urls"))``: the Prometheus scrape URL."""

from __future__ import annotations

from django.urls import path

from .views import metrics

app_name = "repid_metrics"
urlpatterns = [path("", metrics, name="metrics")]
