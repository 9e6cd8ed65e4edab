"""Per-message spans: with no span recorded, the runtime only carries the incoming trace context on."""

from __future__ import annotations

import pytest
from opentelemetry import propagate, trace

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
