"""Small views that enqueue jobs the way users' views do."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, JsonResponse

from repid_django import Job
from repid_django.shortcuts import enqueue_on_commit


def enqueue_sync(request: HttpRequest) -> JsonResponse:
    job = Job("record", queue=request.GET.get("queue", "default"), args={"tag": "sync"})
    message_id = job.enqueue().value
    return JsonResponse({"id": message_id})


async def enqueue_async(request: HttpRequest) -> JsonResponse:
    job = Job("record", queue=request.GET.get("queue", "default"), args={"tag": "async"})
    message_id = await job.enqueue()
    return JsonResponse({"id": message_id})


def enqueue_on_commit_view(request: HttpRequest) -> JsonResponse:
    fail = request.GET.get("fail") == "1"
    job = Job("record", queue=request.GET.get("queue", "default"), args={"tag": "commit"})
    try:
        with transaction.atomic():
            enqueue_on_commit(job)
            if fail:
                raise RuntimeError("rolled back on purpose")
    except RuntimeError:
        return JsonResponse({"rolled_back": True}, status=409)
    return JsonResponse({"id": job.last_id})
