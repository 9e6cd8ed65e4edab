"""schemas/ is generated from the pydantic contracts and must not drift from them."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pydantic import ValidationError

from shared.contracts import events as ev
from shared.contracts.schemas import SCHEMA_DIR, drift, render


def test_schemas_directory_matches_the_contracts() -> None:
    assert drift() == [], "run `som schemas` and commit schemas/"


def test_every_schema_is_valid_json_with_an_id() -> None:
    for name, text in render().items():
        doc = json.loads(text)
        assert doc["$id"].startswith("urn:som:schemas:"), name
        assert (SCHEMA_DIR / name).exists()


def test_amounts_travel_as_strings_and_refuse_floats() -> None:
    line = ev.InvoiceLine(
        kind="recurring", description="x", unit_amount=Decimal("49.00"), amount=Decimal("98.00")
    )
    assert json.loads(line.model_dump_json())["amount"] == "98.00"
    with pytest.raises(ValidationError):
        ev.InvoiceLine.model_validate({"kind": "x", "description": "x", "unit_amount": 0.1, "amount": "1"})
