"""What a scrape returns: this process's metrics (or, under ``PROMETHEUS_MULTIPROC_DIR``, every
process's) followed by the live gauges, in the format the scraper asks for.

Multi-process web servers (gunicorn with several workers) set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty folder before they start: every process then writes its counters there and a scrape of
any one of them adds up all of them (``prometheus_client``'s multiprocess mode). Without it a
scrape shows the process that answers it, which is right for one process per scrape target
(``runworker --metrics-port``, a single-process server).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .live import LiveCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Chain(Collector):
    """The metrics of several collectors, one after the other."""

    def __init__(self, *sources: Collector) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def process_metrics() -> Collector:
    """This process's registry, or every process's under ``PROMETHEUS_MULTIPROC_DIR``."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return REGISTRY
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    return registry


def scrape_source(*, close_db: bool = False) -> Collector:
    """Everything a scrape shows: :func:`process_metrics` and the live gauges."""
    return Chain(process_metrics(), LiveCollector(close_db=close_db))


def render(accept: str | None, *, close_db: bool = False) -> tuple[bytes, str]:
    """The scrape's body and content type (OpenMetrics when ``accept`` asks for it)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(scrape_source(close_db=close_db)), content_type
