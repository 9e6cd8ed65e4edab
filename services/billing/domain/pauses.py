"""Which periods, and which days of them, to bill given pause intervals.

Design: a pause keeps the billing cycle (the anchor does not move). A period is billed
for the days of it that are not paused: a period entirely inside a pause is not billed
at all, a period cut by a pause is billed prorated for its unpaused days (same
denominator as any proration: the full period's length). With the default policy
(``pause.credit_paused_days: true``) the engine reaches exactly this by crediting the
charged-in-advance days from the pause date and charging the rest of the period from
the resume date. See docs/billing.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from services.billing.domain.proration import ProrationFraction
from shared.periods import days_between, period_containing, periods_between


@dataclass(frozen=True)
class ServiceWindow:
    """Unpaused days ``[service_start, service_end)`` of the billing period ``[period_start, period_end)``."""

    period_start: date
    period_end: date
    service_start: date
    service_end: date

    @property
    def fraction(self) -> ProrationFraction:
        """Share of the period this window bills."""
        days = days_between(self.service_start, self.service_end)
        return ProrationFraction(days, days_between(self.period_start, self.period_end))


def _subtract(start: date, end: date, pauses: Sequence[tuple[date, date]]) -> list[tuple[date, date]]:
    # Remove every half-open pause from [start, end); pauses may overlap or be unsorted.
    pieces = [(start, end)]
    for p_start, p_end in sorted(pauses):
        out: list[tuple[date, date]] = []
        for a, b in pieces:
            if p_end <= a or p_start >= b:
                out.append((a, b))
                continue
            if a < p_start:
                out.append((a, p_start))
            if p_end < b:
                out.append((p_end, b))
        pieces = out
    return pieces


def billable_service_windows(
    window_start: date,
    window_end: date,
    *,
    billing_anchor: date,
    interval: str,
    pauses: Sequence[tuple[date, date]] = (),
    anchor_day: int | None = None,
) -> list[ServiceWindow]:
    """The billable days of each billing period overlapping ``[window_start, window_end)``.

    ``pauses`` are half-open ``[paused_on, resumed_on)``; a still-open pause can be passed
    with ``window_end`` as its end. Periods with no billable day are left out.
    """
    windows: list[ServiceWindow] = []
    for clip_start, clip_end in periods_between(
        window_start, window_end, billing_anchor=billing_anchor, interval=interval, anchor_day=anchor_day
    ):
        # periods_between clips to the window; recover the full period for the denominator.
        p_start, p_end = period_containing(
            clip_start, billing_anchor=billing_anchor, interval=interval, anchor_day=anchor_day
        )
        for s, e in _subtract(clip_start, clip_end, pauses):
            windows.append(ServiceWindow(p_start, p_end, s, e))
    return windows
