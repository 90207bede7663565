"""The shop's actors. ``runworker`` finds them: this module is imported at start-up.

Both ways of declaring actors are shown: the app-wide ``@actor`` shortcut (typed
``.enqueue(...)`` helpers) and a module-level ``Router`` as in the Repid documentation.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import timedelta

from django.db.models import F, Sum
from django.utils import timezone

from repid_django import Router, default_retry_policy_factory, set_progress
from repid_django.shortcuts import actor

from .models import Order

logger = logging.getLogger(__name__)

QUICK_RETRIES = default_retry_policy_factory(min_backoff=1, max_backoff=4, multiplier=1)
"""Retry after 1 s, 2 s, 4 s ... so the demo shows retries without a long wait."""


@actor(queue="default")
async def send_order_confirmation(order_id: int) -> dict[str, object]:
    """An async actor: waits on "the mail server" without blocking the worker's loop."""
    await asyncio.sleep(0.3)
    now = timezone.now()
    updated = await Order.objects.filter(pk=order_id).aupdate(confirmed_at=now)
    return {"order": order_id, "sent": bool(updated), "at": now.isoformat()}


@actor(queue="default", retries=1)
def generate_invoice(order_id: int) -> str:
    """A sync actor (runs in the worker's thread pool) that writes to the database."""
    order = Order.objects.get(pk=order_id)
    number = f"INV-{timezone.now():%Y%m%d}-{order.pk:05d}"
    Order.objects.filter(pk=order.pk).update(invoice_number=number)
    return number


@actor(queue="cpu", run_in_process=True, timeout=timedelta(minutes=2))
def count_primes(limit: int) -> dict[str, int]:
    """A CPU-bound actor: runs in the worker's process pool, so it never stalls other jobs."""
    limit = max(2, min(int(limit), 20_000_000))
    sieve = bytearray([1]) * (limit + 1)
    sieve[0:2] = b"\x00\x00"
    for n in range(2, math.isqrt(limit) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, limit + 1, n)))
    return {"limit": limit, "primes": sum(sieve)}


@actor(queue="default", retries=2, retry_policy=QUICK_RETRIES)
def reserve_stock(order_id: int, failures: int = 0) -> str:
    """A flaky actor: its first ``failures`` runs fail. With ``failures`` <= 2 a retry
    succeeds; with 3 or more all three runs fail and the job is dead-lettered (see the
    admin's Dead letters, where it can be requeued)."""
    Order.objects.filter(pk=order_id).update(stock_checks=F("stock_checks") + 1)
    checks = Order.objects.values_list("stock_checks", flat=True).get(pk=order_id)
    if checks <= failures:
        raise ConnectionError(
            f"the stock service did not answer (run {checks} of order {order_id})"
        )
    Order.objects.filter(pk=order_id).update(stock_reserved=True)
    return f"reserved after {checks} run(s)"


@actor(queue="media", timeout=timedelta(minutes=30), concurrency_limit=2)
async def process_images(count: int = 40, seconds_each: float = 0.5) -> dict[str, int]:
    """A long job that reports its progress: the admin's job page and the live monitor show a
    bar ("12 of 40 images"). Pause the 'media' queue or cancel the job from the admin: a
    cancelled run stops at its next ``await`` (``CancelledError``) and is not retried.

    ``concurrency_limit=2``: at most two run at once across all workers (the others wait in
    the queue); the 'media' queue's admin page and the live monitor show the limit."""
    count = max(1, min(int(count), 1000))
    for done in range(1, count + 1):
        await asyncio.sleep(seconds_each)  # "resize" one image without blocking the loop
        await set_progress(done / count, f"{done} of {count} images")
    return {"images": count}


router = Router()


@router.actor(queue="default")
async def ask_for_review(order_id: int) -> str:
    """A delayed job's actor: the shop enqueues it with ``deferred_until`` (30 s later)."""
    order = await Order.objects.aget(pk=order_id)
    return f"asked {order.customer} to review {order.product}"


@router.actor(name="sales_report", queue="default")
async def sales_report() -> dict[str, object]:
    """A periodic job's actor: ``REPID["SCHEDULES"]["sales-report"]`` runs it every minute."""
    totals = await Order.objects.aaggregate(items=Sum("quantity"))
    return {
        "orders": await Order.objects.acount(),
        "items": totals["items"] or 0,
        "at": timezone.now().isoformat(),
    }


@router.actor(queue="default")
async def ping() -> str:
    """A no-op used by ``manage.py demo --check`` to prove a worker answers."""
    return "pong"
