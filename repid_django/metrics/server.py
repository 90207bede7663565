"""``runworker --metrics-port [HOST:]PORT``: each worker process serves its own metrics.

A small HTTP server (``prometheus_client``'s, in a daemon thread of the worker process) answers
every path with the worker's counters and histograms and the live gauges. It runs beside the
event loop, so it still answers when the loop is blocked: ``repid_worker_heartbeat_timestamp_
seconds`` then stops moving, which is what to alert on. It has no authentication: bind it to
an address only the scraper reaches (``127.0.0.1:9100``, a pod's network), or use the Django
view for anything public. One port per process: give each worker process its own.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.core.management.base import CommandError

logger = logging.getLogger("repid_django.metrics")

_servers: dict[tuple[str, int], Any] = {}
_lock = threading.Lock()


def parse_address(spec: str | int) -> tuple[str, int]:
    """``"9100"`` -> ``("0.0.0.0", 9100)``; ``"127.0.0.1:9100"``, ``"[::1]:9100"`` as given."""
    text = str(spec).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host = "0.0.0.0"  # noqa: S104 - a metrics port is meant to be scraped from elsewhere
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise CommandError(f"--metrics-port {text!r}: use PORT or HOST:PORT (0: any free port)")
    return host, number


def serve_worker_metrics(spec: str | int | None) -> tuple[str, int] | None:
    """Start the metrics server of this process at ``spec`` (see :func:`parse_address`) and
    return the address it listens on; ``None`` does nothing. Started once per address."""
    if spec is None:
        return None
    host, port = parse_address(spec)
    from prometheus_client import start_http_server

    from .exposition import scrape_source

    with _lock:
        server = _servers.get((host, port))
        if server is None:
            try:
                server, _ = start_http_server(port, host, registry=scrape_source(close_db=True))
            except OSError as exc:
                raise CommandError(
                    f"--metrics-port: cannot listen on {host}:{port} ({exc}); give each worker "
                    "process a port of its own"
                ) from None
            _servers[(host, port)] = server
    bound = int(server.server_port)
    logger.info("metrics: serving Prometheus metrics on http://%s:%d/metrics", host, bound)
    return host, bound
