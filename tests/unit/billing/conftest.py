"""Shared fixtures of the pure billing domain tests (no broker, no database)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from services.billing.domain import (
    BillingContext,
    BillingState,
    Item,
    TaxProfile,
    load_context,
    new_billing_state,
)
from services.billing.domain.model import BASE_ITEM


@pytest.fixture(scope="session")
def ctx() -> BillingContext:
    """Packaged catalog, billing policy and tax table."""
    return load_context()


StateFactory = Callable[..., BillingState]


@pytest.fixture
def make_state() -> StateFactory:
    """Build a billing state with one base item; keyword arguments override the defaults."""

    def build(
        *,
        plan_id: str = "pro",
        quantity: int = 1,
        unit_amount: Decimal | None = None,
        currency: str = "USD",
        interval: str = "P1M",
        anchor: date = date(2024, 1, 1),
        started_on: date | None = None,
        country: str | None = "US",
        region: str | None = None,
        tax_exempt: bool = False,
        payment_terms_days: int = 0,
        anchor_day: int | None = None,
        **extra: Any,
    ) -> BillingState:
        item = Item(
            item_id=BASE_ITEM,
            plan_id=plan_id,
            quantity=quantity,
            unit_amount=unit_amount,
            price_date=started_on or anchor,
        )
        return new_billing_state(
            subscription_id=extra.pop("subscription_id", "sub-1"),
            currency=currency,
            billing_interval=interval,
            billing_anchor=anchor,
            items=[item, *extra.pop("addons", [])],
            tax_profile=TaxProfile(country=country, region=region, tax_exempt=tax_exempt),
            payment_terms_days=payment_terms_days,
            anchor_day=anchor_day,
        )

    return build
