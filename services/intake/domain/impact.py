"""Impact of a rejected order: how much it matters that it was refused.

Operators work the rejection queue by impact, highest first: order value times the
channel's weight (policy ``impact_weight``). An order whose value is unknown counts as the
policy's ``default_order_value`` rather than zero: unknown must not sort to the bottom.
"""

from __future__ import annotations

from decimal import Decimal

from services.intake.domain.policy import default_order_value


def impact_score(
    order_value: Decimal | None, channel_weight: Decimal, *, default_value: Decimal | None = None
) -> Decimal:
    """``order_value x channel_weight``; an unknown value counts as ``default_value``.

    ``default_value`` defaults to the packaged policy's ``defaults.default_order_value``.
    Negative values (credits) count as zero: a refund cannot make a rejection matter less
    than nothing.
    """
    value = (
        order_value
        if order_value is not None
        else (default_value if default_value is not None else default_order_value())
    )
    return max(value, Decimal(0)) * channel_weight
