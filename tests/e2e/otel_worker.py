"""A process with OpenTelemetry configured, for the tracing test.

``python otel_worker.py worker URL PREFIX SPANS`` runs a worker (actor ``flaky``: fails its
first attempt); ``python otel_worker.py produce URL PREFIX SPANS`` enqueues one ``flaky`` job
inside a ``request`` span. Both write each finished span as a JSON line to SPANS.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from repid_django import Connection, Job, RedisMessageBroker, Repid, Router, Worker


class FileExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                context = span.get_span_context()
                assert context is not None
                record = {
                    "name": span.name,
                    "kind": span.kind.name,
                    "trace": f"{context.trace_id:032x}",
                    "span": f"{context.span_id:016x}",
                    "parent": f"{span.parent.span_id:016x}" if span.parent else None,
                    "status": span.status.status_code.name,
                    "attributes": dict(span.attributes or {}),
                }
                out.write(json.dumps(record) + "\n")
        return SpanExportResult.SUCCESS


async def work(url: str, prefix: str) -> None:
    router = Router()
    seen: list[int] = []

    @router.actor(name="flaky", retry_policy=lambda n=1: 0.05)
    async def flaky() -> None:
        seen.append(1)
        if len(seen) == 1:
            raise RuntimeError("first attempt fails")

    broker = RedisMessageBroker(url, prefix=prefix)
    async with Repid(Connection(broker)).magic(auto_disconnect=True):
        worker = Worker(routers=[router], handle_signals=[])
        task = asyncio.create_task(worker.run())
        print("ready", flush=True)
        while len(seen) < 2 or worker.runner is None or worker.runner.succeeded < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        worker.stop()
        await task


def produce(url: str, prefix: str) -> None:
    connection = Connection(RedisMessageBroker(url, prefix=prefix))
    with trace.get_tracer("test").start_as_current_span("request"):
        Job("flaky", retries=1, connection=connection).enqueue()
    connection.close()


if __name__ == "__main__":
    mode, url, prefix, spans = sys.argv[1:5]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(spans)))
    trace.set_tracer_provider(provider)
    if mode == "worker":
        asyncio.run(work(url, prefix))
    else:
        produce(url, prefix)
    provider.shutdown()
