"""Exact money: ``Decimal`` amounts quantized to each currency's ISO 4217 minor units.

No float ever touches an amount. Every function that splits an amount returns
parts that sum back to it exactly (largest-remainder allocation).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

# ISO 4217 minor units for the currencies a subscription business meets.
# Currencies not listed default to 2; the zero- and three-digit ones are spelled out
# because guessing them wrong is a 100x or 10x billing error.
_MINOR_UNITS: dict[str, int] = {
    # zero decimals
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    # three decimals
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    # four decimals
    "CLF": 4,
    "UYW": 4,
}


class MoneyError(ValueError):
    """An amount or currency that cannot be represented exactly."""


def normalize_currency(currency: str) -> str:
    """Upper-case, stripped ISO 4217 alphabetic code; raises on anything else."""
    code = currency.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise MoneyError(f"not an ISO 4217 currency code: {currency!r}")
    return code


def minor_units(currency: str) -> int:
    """Number of digits after the decimal point for ``currency`` (JPY 0, USD 2, BHD 3)."""
    return _MINOR_UNITS.get(normalize_currency(currency), 2)


def quantum(currency: str) -> Decimal:
    """The smallest amount of ``currency``: ``Decimal('0.01')`` for USD, ``Decimal('1')`` for JPY."""
    return Decimal(1).scaleb(-minor_units(currency))


def to_decimal(value: object) -> Decimal:
    """Parse a decimal amount from a string, int or Decimal. Floats are refused on purpose."""
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError(f"refusing a binary float as an amount: {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation as exc:
            raise MoneyError(f"not a decimal amount: {value!r}") from exc
    else:
        raise MoneyError(f"not a decimal amount: {value!r}")
    if not result.is_finite():
        raise MoneyError(f"not a finite amount: {value!r}")
    return result


def round_half_up(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit, half away from zero (the billing convention)."""
    return amount.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def truncate(amount: Decimal, currency: str) -> Decimal:
    """Cut extra digits without rounding."""
    return amount.quantize(quantum(currency), rounding=ROUND_DOWN)


def is_exact(amount: Decimal, currency: str) -> bool:
    """True when ``amount`` carries no digits finer than the currency's minor unit."""
    return amount == amount.quantize(quantum(currency))


def format_major(amount: Decimal, currency: str, *, keep_extra_digits: bool = False) -> str:
    """Decimal string in major units with exactly the currency's digits (USD ``49.00``, JPY ``1500``).

    With ``keep_extra_digits`` finer digits already present are kept, never rounded
    (a channel's sub-cent unit price is information, not noise).
    """
    q = quantum(currency)
    if keep_extra_digits:
        exponent = amount.normalize().as_tuple().exponent
        if isinstance(exponent, int) and exponent < -minor_units(currency):
            return f"{amount.normalize():f}"
        return f"{amount.quantize(q):f}"
    if not is_exact(amount, currency):
        raise MoneyError(f"{amount} has more digits than {currency} allows")
    return f"{amount.quantize(q):f}"


def from_minor(minor: int, currency: str) -> Decimal:
    """Major-unit amount from an integer count of minor units (Stripe's ``4900`` cents -> ``49.00``)."""
    return Decimal(minor).scaleb(-minor_units(currency)).quantize(quantum(currency))


def to_minor(amount: Decimal, currency: str) -> int:
    """Integer count of minor units; raises if the amount is not exact in the currency."""
    if not is_exact(amount, currency):
        raise MoneyError(f"{amount} is not exact in {currency}")
    return int(amount.scaleb(minor_units(currency)))


def allocate(amount: Decimal, weights: Sequence[Decimal | int], currency: str) -> list[Decimal]:
    """Split ``amount`` over ``weights`` so the parts sum back to ``amount`` exactly.

    Largest-remainder method in minor units: each part gets the floor of its exact
    share, then the leftover minor units go one each to the largest remainders
    (earliest index first on ties, so the result is deterministic).
    """
    if not weights:
        raise MoneyError("cannot allocate over no parts")
    w = [to_decimal(x) for x in weights]
    if any(x < 0 for x in w):
        raise MoneyError("weights must not be negative")
    total_weight = sum(w, Decimal(0))
    if total_weight == 0:
        raise MoneyError("weights must not all be zero")
    total_minor = to_minor(amount, currency)
    sign = -1 if total_minor < 0 else 1
    units = abs(total_minor)
    exact = [Decimal(units) * x / total_weight for x in w]
    floors = [int(e) for e in exact]  # int() truncates toward zero; all shares are >= 0 here
    leftover = units - sum(floors)
    order = sorted(range(len(w)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:leftover]:
        floors[i] += 1
    return [from_minor(sign * f, currency) for f in floors]


class Money:
    """An exact amount in one currency; arithmetic refuses to mix currencies."""

    __slots__ = ("amount", "currency")

    def __init__(self, amount: object, currency: str) -> None:
        cur = normalize_currency(currency)
        value = to_decimal(amount)
        if not is_exact(value, cur):
            raise MoneyError(f"{value} has more digits than {cur} allows")
        self.amount: Decimal = value.quantize(quantum(cur))
        self.currency: str = cur

    @classmethod
    def zero(cls, currency: str) -> Money:
        """Zero in ``currency``."""
        return cls(0, currency)

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.amount, self.currency) == (other.amount, other.currency)

    def __hash__(self) -> int:
        return hash((self.amount, self.currency))

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __repr__(self) -> str:
        return f"Money({str(self)!r})"

    def __str__(self) -> str:
        return f"{format_major(self.amount, self.currency)} {self.currency}"

    def multiply(self, factor: Decimal | int) -> Money:
        """Amount times ``factor``, rounded half-up to the minor unit."""
        return Money(round_half_up(self.amount * to_decimal(factor), self.currency), self.currency)

    def allocate(self, weights: Sequence[Decimal | int]) -> list[Money]:
        """Split into parts that sum back exactly; see :func:`allocate`."""
        return [Money(a, self.currency) for a in allocate(self.amount, weights, self.currency)]

    def to_wire(self) -> dict[str, str]:
        """``{"amount": "49.00", "currency": "USD"}``: decimal string beside its currency."""
        return {"amount": format_major(self.amount, self.currency), "currency": self.currency}


DecimalString = Annotated[
    Decimal,
    BeforeValidator(to_decimal),
    PlainSerializer(lambda d: f"{d:f}", return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "description": "decimal amount"}),
]
"""Pydantic field type: a Decimal that travels as a JSON string and never accepts a float."""
