from __future__ import annotations

from django.urls import path

from . import views

app_name = "shop"

urlpatterns = [
    path("", views.index, name="index"),
    path("orders/", views.place_order, name="place-order"),
    path("crunch/", views.crunch, name="crunch"),
    path("images/", views.process_images, name="images"),
    path("jobs/", views.jobs, name="jobs"),
]
