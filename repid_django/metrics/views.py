"""The metrics view: ``GET`` only, never cached, guarded by ``REPID["METRICS_AUTH"]``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .auth import metrics_auth
from .exposition import render

DENIED = (
    "metrics: not allowed. Log in as staff, send 'Authorization: Bearer <token>', or scrape "
    "from an allowed address (REPID['METRICS_AUTH']).\n"
)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_auth().allows(request):
        return HttpResponseForbidden(DENIED, content_type="text/plain; charset=utf-8")
    body, content_type = render(request.headers.get("Accept"))
    return HttpResponse(body, content_type=content_type)
