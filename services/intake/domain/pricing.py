"""Prices the channel does not carry, from the catalog, and the value of an order."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from services.intake.domain.amounts import AmountError, multiply
from services.intake.domain.timefmt import parse_timestamp
from shared.catalog import Catalog, CatalogError
from shared.contracts.canonical import CanonicalOrderChange
from shared.money import MoneyError, normalize_currency, to_decimal


def price_from_catalog(
    catalog: Catalog, plan_id: str | None, currency: str | None, billing_interval: str | None, on: date
) -> Decimal | None:
    """Unit price (major units) of ``plan_id`` in force on ``on``; ``None`` when the catalog has none.

    ``None`` rather than an exception: an unpriced combination is a validation finding
    (``CURRENCY_NOT_PRICED``), not a crash of the normalizer.
    """
    if not plan_id or not currency or not billing_interval:
        return None
    plan = catalog.find(plan_id)
    if plan is None:
        return None
    try:
        return plan.price_on(normalize_currency(currency), billing_interval, on).unit_amount
    except (CatalogError, MoneyError):
        return None


def effective_date(change: CanonicalOrderChange) -> date | None:
    """UTC calendar date of the change's ``effective_at`` (``None`` when it has none)."""
    if not change.effective_at:
        return None
    try:
        return parse_timestamp(change.effective_at, assume_utc=False).date()
    except ValueError:
        return None


def order_value(change: CanonicalOrderChange, catalog: Catalog, plan_id: str | None) -> Decimal | None:
    """What the order is worth per billing interval (or per contract for commit amounts).

    The channel's own amount first, then its unit price times quantity, then the catalog
    price in the change's currency and interval on its effective date. ``None`` when none
    of these is known (marketplaces that carry no price and no currency).
    """
    quantity = change.quantity if change.quantity is not None else 1
    try:
        if change.amount is not None:
            return to_decimal(change.amount)
        if change.unit_amount is not None:
            return multiply(to_decimal(change.unit_amount), quantity)
    except (MoneyError, AmountError):
        return None
    on = effective_date(change)
    if on is None:
        return None
    unit = price_from_catalog(catalog, plan_id, change.currency, change.billing_interval or "P1M", on)
    if unit is None:
        return None
    try:
        return multiply(unit, quantity)
    except AmountError:
        return None
