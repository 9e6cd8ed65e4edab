"""What every channel normalizer gets and returns."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from services.intake.domain.amounts import AmountError, divide_exact, multiply, render
from services.intake.domain.wire import Reader, header
from shared.catalog import Catalog
from shared.contracts.canonical import AmountBasis, CanonicalOrderChange


@dataclass(frozen=True)
class Context:
    """Everything a normalizer may use besides the body: the channel and its transport context."""

    channel: str
    transport: Mapping[str, Any]
    catalog: Catalog | None = None

    @property
    def headers(self) -> Mapping[str, Any]:
        """HTTP headers of the delivery (``transport["headers"]``), possibly empty."""
        value = self.transport.get("headers")
        return value if isinstance(value, Mapping) else {}

    def header(self, name: str) -> str | None:
        """One header, case-insensitively."""
        return header(self.headers, name)


@dataclass
class ChannelResult:
    """A normalizer's answer before the registry applies the generic drop rules.

    ``version`` is the channel's own ordering number (Shopify ``revision_id``, Omnistrate
    ``contractVersion``, Stripe ``created``) compared with ``transport["last_applied_version"]``.
    ``ignored`` explains why a well-formed payload means no change, ``duplicate`` why it
    repeats what was already seen (a polled snapshot identical to the previous one).
    """

    changes: list[CanonicalOrderChange] = field(default_factory=list)
    version: int | None = None
    ignored: str | None = None
    duplicate: str | None = None


Normalizer = Callable[[bytes, Context], ChannelResult]


@dataclass(frozen=True)
class Money:
    """Unit price, line amount and basis as canonical decimal strings (all ``None`` when unknown)."""

    unit_amount: str | None = None
    amount: str | None = None
    amount_basis: AmountBasis | None = None


def line_money(
    reader: Reader,
    key: str,
    *,
    unit: Decimal | None = None,
    total: Decimal | None = None,
    quantity: int | None,
    currency: str | None,
    basis: AmountBasis = "per_interval",
) -> Money:
    """Canonical money of one line from a unit price or a line total (the other is derived exactly).

    Problems (an amount that cannot be represented) are recorded on ``reader`` under ``key``.
    """
    try:
        if unit is not None and total is None and quantity is not None:
            total = multiply(unit, quantity)
        elif total is not None and unit is None and quantity is not None:
            unit = divide_exact(total, quantity)
        return Money(
            unit_amount=render(unit, currency) if unit is not None else None,
            amount=render(total, currency) if total is not None else None,
            amount_basis=basis if total is not None else None,
        )
    except AmountError as exc:
        reader.amount_error(key, exc)
        return Money()
