"""The channel payload parser: one shared decoder that behaves as ``json.loads`` with the same hooks."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake.domain.wire import _decimal_literal, _no_constants, parse_json_text

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.decimals(allow_nan=False, allow_infinity=False, places=4)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _reference(text: str | bytes) -> Any:
    return json.loads(text, parse_float=_decimal_literal, parse_constant=_no_constants)


@given(_json_values, st.sampled_from(["utf-8", "utf-16", "utf-32-le"]))
def test_parses_as_json_loads_with_the_same_hooks(value: Any, encoding: str) -> None:
    text = json.dumps(value, default=str, ensure_ascii=False)
    assert parse_json_text(text) == _reference(text)
    as_bytes = text.encode(encoding)
    assert parse_json_text(as_bytes) == _reference(as_bytes)


def test_numbers_with_a_fraction_are_exact_decimals() -> None:
    doc = parse_json_text(b'{"amount": 0.1, "n": 3}')
    assert doc == {"amount": Decimal("0.1"), "n": 3}
    assert type(doc["amount"]) is Decimal


@pytest.mark.parametrize("text", ["NaN", '{"a": Infinity}', "[-Infinity]", "{", ""])
def test_rejects_what_json_loads_with_the_hooks_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        _reference(text)
    with pytest.raises(ValueError):
        parse_json_text(text)
