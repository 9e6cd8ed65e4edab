"""Per-message spans: with no span recorded, the runtime only carries the incoming trace context on."""

from __future__ import annotations

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import shared.telemetry as telemetry
from shared.messaging.incoming import Incoming
from shared.messaging.lanes import process_span

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-00"


def _incoming() -> Incoming:
    return Incoming(
        topic="subscriptions.events",
        partition=0,
        offset=7,
        key="sub-1",
        value=b"{}",
        headers={"traceparent": PARENT},
        timestamp_ms=0,
    )


@pytest.mark.parametrize("recorded", [False, True])
def test_events_caused_by_a_message_carry_its_trace_id(
    monkeypatch: pytest.MonkeyPatch, recorded: bool
) -> None:
    monkeypatch.setattr(telemetry, "_spans_recorded", recorded)
    tracer = trace.get_tracer("test")
    before = trace.get_current_span()
    with process_span(tracer, "subscriptions.events", _incoming(), "billing") as span:
        assert format(span.get_span_context().trace_id, "032x") == TRACE_ID
        outgoing: dict[str, str] = {}
        propagate.inject(outgoing)  # what UnitOfWork.emit writes with an event
        assert outgoing["traceparent"].split("-")[1] == TRACE_ID
    assert trace.get_current_span() is before  # the message's context ends with it


def test_a_recorded_process_span_carries_the_messaging_attributes(
    monkeypatch: pytest.MonkeyPatch, spans: InMemorySpanExporter
) -> None:
    """The semantic-convention names the consumer span shares with the relay's producer span."""
    monkeypatch.setattr(telemetry, "_spans_recorded", True)
    incoming = _incoming()
    incoming.headers["traceparent"] = PARENT[:-2] + "01"  # a sampled parent: the span is recorded
    incoming.headers["ce_id"] = "evt-1"
    with process_span(trace.get_tracer("test"), "subscriptions.events", incoming, "billing"):
        pass
    (span,) = [s for s in spans.get_finished_spans() if s.name == "subscriptions.events process"]
    assert dict(span.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": "subscriptions.events",
        "messaging.kafka.message.key": "sub-1",
        "messaging.message.id": "evt-1",
        "messaging.consumer.group.name": "billing",
        "messaging.destination.partition.id": "0",
        "messaging.kafka.offset": 7,
        "messaging.som.attempt": 1,
    }
