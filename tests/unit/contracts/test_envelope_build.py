"""Models written without a second validation or encoding pass: events built by make_event are exactly
what validation would have made, and json_of stores what model_dump then orjson stored."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from shared.contracts.envelope import CloudEvent, make_event
from shared.db.pool import JsonText, _encode_json, json_of


class _Line(BaseModel):
    amount: Decimal
    on: date
    note: str | None = None
    tags: list[str] = []


_lines = st.builds(
    _Line,
    amount=st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-(10**9), max_value=10**9),
    on=st.dates(),
    note=st.none() | st.text(),
    tags=st.lists(st.text(), max_size=3),
)


@given(
    _lines,
    st.text(min_size=1),
    st.none() | st.text(),
    st.none() | st.text(min_size=1),
    st.datetimes(timezones=st.just(UTC)),
)
def test_built_event_equals_its_validated_form(
    line: _Line, correlation: str, subject: str | None, causation: str | None, at: datetime
) -> None:
    event = make_event(
        type="som.test.line",
        source="som/test",
        subject=subject,
        data=line,
        correlation_id=correlation,
        causation_id=causation,
        time=at,
    )
    validated = CloudEvent.model_validate_json(event.model_dump_json())
    assert validated == event
    assert validated.model_dump_json() == event.model_dump_json()
    assert event.payload(_Line) == line


@given(_lines)
def test_json_of_stores_what_model_dump_would(line: _Line) -> None:
    encoded = _encode_json(json_of(line))
    assert type(json_of(line)) is JsonText
    assert orjson.loads(encoded) == line.model_dump(mode="json")
    # Anything else still goes through orjson, as before.
    assert orjson.loads(_encode_json({"a": [1, "x"]})) == {"a": [1, "x"]}
