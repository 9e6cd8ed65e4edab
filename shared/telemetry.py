"""Tracing and logs: one trace per order across every service, trace ids in every log line."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.util.types import AttributeValue

from shared.db.pool import instrument_asyncpg


def _exporting() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def traces_sampler() -> Sampler:
    """The sampler: the standard ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` when set.

    Unset, it is parent-based always-on when spans are exported, and always-off when nothing
    would receive them: recording a span per statement that nobody reads costs a third of a
    worker's CPU. Trace context still travels (unsampled), so logs keep their trace ids.
    """
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        sampler = sampling._get_from_env_or_default()
        assert sampler is not None
        return sampler
    return sampling.ParentBased(sampling.ALWAYS_ON) if _exporting() else sampling.ALWAYS_OFF


def records_spans(sampler: Sampler) -> bool:
    """False for a sampler that never records (then statement spans are not even created)."""
    return sampler is not sampling.ALWAYS_OFF and not (
        isinstance(sampler, sampling.TraceIdRatioBased) and sampler.rate == 0
    )


_spans_recorded = False


def spans_recorded() -> bool:
    """True once tracing is set up with a sampler that may record spans.

    When False, the runtime does not even create its per-message spans: it only carries the
    incoming trace context on (a span that is never recorded costs a worker about 5 % of its CPU).
    """
    return _spans_recorded


def kafka_span_attributes(
    operation: str,
    topic: str,
    key: str | None,
    message_id: str,
    extra: Mapping[str, AttributeValue] | None = None,
) -> dict[str, AttributeValue]:
    """The OpenTelemetry messaging attributes of a Kafka span (``send`` or ``process``), plus ``extra``.

    One place for the semantic-convention names the relay's producer spans and the lanes'
    consumer spans share.
    """
    return {
        "messaging.system": "kafka",
        "messaging.operation.name": operation,
        "messaging.operation.type": operation,
        "messaging.destination.name": topic,
        "messaging.kafka.message.key": key or "",
        "messaging.message.id": message_id,
        **(extra or {}),
    }


def setup_tracing(service_name: str, provider: TracerProvider | None = None) -> TracerProvider:
    """Install a global tracer provider; spans go to OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set.

    A provider given by the caller (tests) records everything; otherwise sampling follows
    ``traces_sampler``, and database statements become spans only when spans are recorded.
    """
    current = trace.get_tracer_provider()
    if provider is None and isinstance(current, TracerProvider):
        return current  # already set up in this process (several workers in one process)
    record = True
    if provider is None:
        # OTEL_SERVICE_NAME wins when the deployment sets it.
        name = os.environ.get("OTEL_SERVICE_NAME") or service_name
        sampler = traces_sampler()
        record = records_spans(sampler)
        provider = TracerProvider(resource=Resource.create({"service.name": name}), sampler=sampler)
        if _exporting():
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    global _spans_recorded
    _spans_recorded = record
    if record:
        instrument_asyncpg()
    return provider


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line with the current trace and span ids."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        ctx = trace.get_current_span().get_span_context()
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if ctx.is_valid:
            doc["trace_id"] = format(ctx.trace_id, "032x")
            doc["span_id"] = format(ctx.span_id, "016x")
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(service: str, level: str = "INFO", *, json_lines: bool = True) -> None:
    """Structured logs on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLogFormatter(service)
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
