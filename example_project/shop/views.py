"""The shop's pages: a sync view and an async view that enqueue jobs, and a jobs page."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from repid_django import Job, ops
from repid_django.models import DeadLetterRecord, JobRecord, JobStatus

from . import tasks
from .forms import CrunchForm, ImagesForm, OrderForm
from .models import Order


def index(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "shop/index.html",
        {
            "order_form": OrderForm(),
            "crunch_form": CrunchForm(),
            "images_form": ImagesForm(),
            "orders": Order.objects.all()[:5],
        },
    )


@require_POST
def place_order(request: HttpRequest) -> HttpResponse:
    """A sync view: the order and its jobs are committed together (enqueue-on-commit)."""
    form = OrderForm(request.POST)
    if not form.is_valid():
        return render(
            request,
            "shop/index.html",
            {"order_form": form, "crunch_form": CrunchForm(), "images_form": ImagesForm()},
            status=400,
        )
    data = form.cleaned_data
    with transaction.atomic():
        order = Order.objects.create(
            customer=data["customer"], product=data["product"], quantity=data["quantity"]
        )
        # Sent only if the transaction commits: a worker never sees an order that isn't there.
        tasks.send_order_confirmation.enqueue_on_commit(order_id=order.pk)
        tasks.generate_invoice.enqueue_on_commit(order_id=order.pk)
        tasks.reserve_stock.enqueue_on_commit(
            order_id=order.pk, failures=int(data["stock_service"])
        )
    if data["ask_review"]:
        # A plain Job, sent at once from sync code; it runs 30 seconds from now.
        Job(
            "ask_for_review",
            args={"order_id": order.pk},
            deferred_until=timezone.now() + timedelta(seconds=30),
        ).enqueue()
    messages.success(request, f"{order} placed: its jobs are on their way.")
    return HttpResponseRedirect(reverse("shop:jobs"))


@require_POST
async def crunch(request: HttpRequest) -> HttpResponse:
    """An async view: ``await`` the enqueue; nothing blocks the server's event loop."""
    form = CrunchForm(request.POST)
    if not form.is_valid():
        return render(
            request,
            "shop/index.html",
            {"order_form": OrderForm(), "crunch_form": form, "images_form": ImagesForm()},
            status=400,
        )
    limit, count = form.cleaned_data["limit"], form.cleaned_data["jobs"]
    for step in range(count):
        await tasks.count_primes.aenqueue(limit=limit + step)
    await Job("ping").enqueue()
    messages.success(request, f"{count} CPU-bound job(s) sent to the 'cpu' queue.")
    return HttpResponseRedirect(reverse("shop:jobs"))


@require_POST
def process_images(request: HttpRequest) -> HttpResponse:
    """Sends a long job that reports its progress; its admin page shows it, with Cancel."""
    form = ImagesForm(request.POST)
    if not form.is_valid():
        return render(
            request,
            "shop/index.html",
            {"order_form": OrderForm(), "crunch_form": CrunchForm(), "images_form": form},
            status=400,
        )
    job_id = tasks.process_images.enqueue(count=form.cleaned_data["count"]).value
    messages.success(
        request,
        f"Job {job_id} processes {form.cleaned_data['count']} images on the 'media' queue: "
        "follow its progress on its admin page (open it from Recent jobs) or in the live "
        "monitor, and try Cancel there, or Pause on the 'media' queue.",
    )
    return HttpResponseRedirect(reverse("shop:jobs"))


def jobs(request: HttpRequest) -> HttpResponse:
    """Recent jobs and their results, as mirrored by the workers (refreshes itself), with the
    progress running jobs reported (read from the broker)."""
    recent = list(JobRecord.objects.order_by("-updated_at")[:30])
    running: dict[str, list[str]] = defaultdict(list)
    for job in recent:
        if job.status == JobStatus.RUNNING:
            running[job.queue].append(job.job_id)
    try:
        progress = ops.progress_by_queue(running, timeout=2.0)
    except ops.BrokerUnavailable:
        progress = {}
    return render(
        request,
        "shop/jobs.html",
        {
            "jobs": [
                (
                    job,
                    _last_line(job.error),
                    progress.get(job.queue, {}).get(job.job_id),
                    _as_json(job.result),
                )
                for job in recent
            ],
            "dead": [
                (letter, _last_line(letter.error))
                for letter in DeadLetterRecord.objects.filter(requeued_at=None, purged_at=None)[:10]
            ],
            "orders": Order.objects.all()[:10],
        },
    )


def _as_json(value: object) -> str | None:
    """A result as JSON (as the admin shows it), not as a Python repr; ``None``: no result."""
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, default=str)


def _last_line(text: str) -> str:
    """The exception line of a traceback."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
