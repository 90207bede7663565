"""OpenTelemetry traces (optional): a job's run continues the trace of the code that enqueued it.

With ``opentelemetry-api`` installed and a tracer provider configured (the SDK, or any
distribution), every enqueue starts a ``send <queue>`` span (kind PRODUCER) as a child of the
current span and writes its context into the message (``trace``: the W3C ``traceparent`` and
``tracestate`` headers); the worker runs the actor inside a ``process <queue>`` span (kind
CONSUMER) whose parent is that context, so the request, the enqueue and every run of the job are
one trace, each retry a span of its own. Attributes follow the messaging semantic conventions:
``messaging.system`` (``repid``), ``messaging.operation.type``, ``messaging.destination.name``
(the queue), ``messaging.message.id``, plus ``repid.actor`` and ``repid.attempt``. A run that
fails records its exception and an error status.

Without OpenTelemetry installed, or with no provider configured, this costs one check per
enqueue and per run, and messages carry no ``trace`` field.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

try:  # pragma: no branch - which one depends on the installation
    from opentelemetry import propagate, trace
    from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - covered by the tests without it
    trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from .message import Message

SYSTEM = "repid"
_NO_PROVIDER: tuple[type, ...] = () if trace is None else (ProxyTracerProvider,)


def enabled() -> bool:
    """True when OpenTelemetry is installed and a tracer provider is configured."""
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return (
        not isinstance(provider, _NO_PROVIDER) and type(provider).__name__ != "NoOpTracerProvider"
    )


def _tracer() -> Any:
    return trace.get_tracer("repid_django")


def traced(messages: Sequence[Message]) -> Sequence[Message]:
    """``messages`` with the context of a ``send`` span each (unchanged when not enabled)."""
    if not enabled():
        return messages
    tracer = _tracer()
    out = []
    for message in messages:
        attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.destination.name": message.queue,
            "messaging.message.id": message.id,
            "repid.actor": message.actor,
        }
        name = f"send {message.queue}"
        with tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
        out.append(message.with_changes(trace=carrier or None))
    return out


@contextlib.contextmanager
def run_span(message: Message) -> Iterator[Any]:
    """The span of one run of ``message`` (a no-op when not enabled); yields the span or None."""
    if not enabled():
        yield None
        return
    parent = propagate.extract(message.trace) if message.trace else None
    attributes = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.destination.name": message.queue,
        "messaging.message.id": message.id,
        "repid.actor": message.actor,
        "repid.attempt": message.attempt + 1,
    }
    with _tracer().start_as_current_span(
        f"process {message.queue}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=True,
        set_status_on_exception=True,
    ) as span:
        yield span


def failed(span: Any, error: str) -> None:
    """Mark ``span`` (from :func:`run_span`) failed with the run's error text."""
    if span is not None:
        span.set_status(Status(StatusCode.ERROR, error.strip().splitlines()[-1][:200]))
