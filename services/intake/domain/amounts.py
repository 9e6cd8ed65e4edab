"""Exact amount arithmetic for normalizers: no float, no silent rounding.

The default ``decimal`` context rounds to 28 significant digits without saying so; every
operation here runs in a context that traps inexact results instead, so an amount is
either exact or refused (:class:`AmountError`).
"""

from __future__ import annotations

import decimal
from decimal import Decimal

from shared.money import MoneyError, format_major, minor_units, normalize_currency

_EXACT = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow])
_MAX_DIGITS = 40  # an amount with more significant digits than this is garbage, not money


class AmountError(ValueError):
    """An amount that cannot be represented exactly."""


def _check(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise AmountError(f"not a finite amount: {value}")
    if len(value.as_tuple().digits) > _MAX_DIGITS or abs(value.adjusted()) > _MAX_DIGITS:
        raise AmountError(f"amount out of range: {value}")
    return value


def currency_code(value: str) -> str:
    """Upper-case ISO 4217 code; raises :class:`AmountError` when it is not one."""
    try:
        return normalize_currency(value)
    except MoneyError as exc:
        raise AmountError(str(exc)) from exc


def from_minor_units(minor: Decimal, currency: str) -> Decimal:
    """Major units of an amount counted in minor units (Stripe ``4900`` USD -> ``49``; JPY unchanged).

    Fractions of a minor unit (Stripe ``unit_amount_decimal`` ``"4900.5"``) are kept.
    """
    _check(minor)
    try:
        return _check(minor.scaleb(-minor_units(currency), context=_EXACT))
    except decimal.DecimalException as exc:
        raise AmountError(f"cannot scale {minor}") from exc


def render(amount: Decimal, currency: str | None) -> str:
    """Decimal string in major units with the currency's digits; finer source digits kept.

    Without a currency (STACKIT ``rate``) the source digits are kept as they are.
    """
    _check(amount)
    try:
        if currency is None:
            return f"{amount:f}"
        return format_major(amount, currency, keep_extra_digits=True)
    except (decimal.DecimalException, MoneyError) as exc:
        raise AmountError(f"cannot render {amount} {currency}") from exc


def multiply(unit: Decimal, quantity: int) -> Decimal:
    """``unit`` x ``quantity``, exactly."""
    try:
        return _check(_EXACT.multiply(_check(unit), Decimal(quantity)))
    except decimal.DecimalException as exc:
        raise AmountError(f"cannot multiply {unit} by {quantity}") from exc


def divide_exact(total: Decimal, quantity: int) -> Decimal | None:
    """``total / quantity`` when that is exact (``240 / 3 = 80``), else ``None``.

    A derived unit price that would need rounding is not invented: ``None`` says
    "not carried", which is true.
    """
    if quantity <= 0:
        return None
    try:
        return _check(_EXACT.divide(_check(total), Decimal(quantity)))
    except decimal.DecimalException:
        return None
