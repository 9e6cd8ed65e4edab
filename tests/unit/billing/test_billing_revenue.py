"""Revenue recognition: journal entries on issue, month-end recognition by day, credit notes reverse."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.billing.domain import Activate, BillingContext, Cancel, apply
from services.billing.domain.documents import assemble_document
from services.billing.domain.model import Line, TaxProfile
from services.billing.domain.pauses import billable_service_windows
from services.billing.domain.revenue import (
    deferred_balance,
    format_revenue_schedule,
    journal_on_issue,
    line_schedule,
    month_end,
    recognised_by_day,
    recognition_entries,
    revenue_schedule,
)
from services.billing.domain.tax import load_tax_table
from shared.money import from_minor
from shared.periods import add_interval

from .conftest import StateFactory

D = Decimal


def service_line(amount: str, start: date, end: date) -> Line:
    return Line(
        kind="recurring",
        description="plan",
        service_period_start=start,
        service_period_end=end,
        unit_amount=D(amount),
        amount=D(amount),
    )


def test_yearly_line_recognised_by_day_over_a_leap_year() -> None:
    """490.00 for [2024-01-01, 2025-01-01) = 366 days, recognised at each month end.

    Jan: 31/366 x 490 = 41.5027 -> 41.50. Through Feb: 60/366 x 490 = 80.3279 -> 80.33, so Feb = 38.83.
    Through Nov: 335/366 x 490 = 448.4973 -> 448.50; Dec takes the remainder 490.00 - 448.50 = 41.50.
    """
    pieces = line_schedule(
        service_line("490.00", date(2024, 1, 1), date(2025, 1, 1)), "USD", issue_date=date(2024, 1, 1)
    )
    assert len(pieces) == 12
    assert [p.month_end for p in pieces][:2] == [date(2024, 1, 31), date(2024, 2, 29)]
    assert [p.amount for p in pieces][:2] == [D("41.50"), D("38.83")]
    assert pieces[-1].amount == D("41.50")
    assert sum(p.amount for p in pieces) == D("490.00")
    assert deferred_balance(pieces, date(2024, 11, 30)) == D("41.50")
    assert deferred_balance(pieces, date(2024, 12, 31)) == 0


def test_schedule_printout() -> None:
    """24.95 for [Sep 25, Oct 25) = 30 days: Sep 6/30 = 4.99, Oct takes 19.96."""
    pieces = revenue_schedule(
        [service_line("24.95", date(2024, 9, 25), date(2024, 10, 25))], "USD", issue_date=date(2024, 9, 25)
    )
    assert [(p.month_end, p.days, p.amount) for p in pieces] == [
        (date(2024, 9, 30), 6, D("4.99")),
        (date(2024, 10, 31), 24, D("19.96")),
    ]
    text = format_revenue_schedule(pieces, "USD")
    assert "2024-09-30" in text and "19.96" in text and text.splitlines()[-1].endswith("24.95 USD")


def test_point_in_time_lines_are_recognised_in_the_month_of_issue() -> None:
    one_off = Line(kind="one_off", description="Workshop", unit_amount=D("150.00"), amount=D("150.00"))
    [piece] = revenue_schedule([one_off], "USD", issue_date=date(2024, 5, 3))
    assert (piece.month_end, piece.amount) == (date(2024, 5, 31), D("150.00"))


def test_invoice_and_credit_note_journal(ctx: BillingContext, make_state: StateFactory) -> None:
    """Pro 49.00 for April (US, no tax), cancelled at once on Apr 21: credit 10/30 x 49.00 = 16.33.

    Issue:       Dr receivables 49.00 / Cr deferred revenue 49.00.
    Credit note: Dr deferred revenue 16.33 / Cr receivables 16.33; then credited to the account:
                 Dr receivables 16.33 / Cr customer credit 16.33.
    Apr 30:      revenue 49.00 - 16.33 = 32.67 for the 20 days served; nothing deferred afterwards.
    """
    state = make_state(anchor=date(2024, 4, 1))
    first = apply(state, Activate(on=date(2024, 4, 1)), ctx)
    cancel = apply(first.state, Cancel(on=date(2024, 4, 21), timing="immediate"), ctx)
    [invoice], [note] = first.documents, cancel.documents
    [issue] = journal_on_issue(invoice)
    assert {(p.account, p.debit, p.credit) for p in issue.postings} == {
        ("accounts_receivable", D("49.00"), D(0)),
        ("deferred_revenue", D(0), D("49.00")),
    }
    reverse, to_account = journal_on_issue(note)
    assert {(p.account, p.debit, p.credit) for p in reverse.postings} == {
        ("accounts_receivable", D(0), D("16.33")),
        ("deferred_revenue", D("16.33"), D(0)),
    }
    assert {(p.account, p.debit, p.credit) for p in to_account.postings} == {
        ("accounts_receivable", D("16.33"), D(0)),
        ("customer_credit", D(0), D("16.33")),
    }
    pieces = revenue_schedule([*invoice.lines, *note.lines], "USD", issue_date=date(2024, 4, 1))
    [april] = recognition_entries(pieces, "USD")
    assert {(p.account, p.debit, p.credit) for p in april.postings} == {
        ("deferred_revenue", D("32.67"), D(0)),
        ("revenue", D(0), D("32.67")),
    }
    assert deferred_balance(pieces, date(2024, 4, 30)) == 0


def test_taxed_invoice_with_account_credit(ctx: BillingContext, make_state: StateFactory) -> None:
    """German customer, 45.00 + 8.55 VAT = 53.55, 10.00 account credit applied.

    Issue: Dr receivables 53.55 / Cr deferred 45.00 / Cr tax payable 8.55.
    Credit: Dr customer credit 10.00 / Cr receivables 10.00.
    """
    state = make_state(currency="EUR", country="DE", anchor=date(2024, 4, 1))
    [invoice] = apply(state, Activate(on=date(2024, 4, 1)), ctx, account_credit=D("10.00")).documents
    issue, credit = journal_on_issue(invoice)
    assert {(p.account, p.debit, p.credit) for p in issue.postings} == {
        ("accounts_receivable", D("53.55"), D(0)),
        ("deferred_revenue", D(0), D("45.00")),
        ("tax_payable", D(0), D("8.55")),
    }
    assert {(p.account, p.debit, p.credit) for p in credit.postings} == {
        ("customer_credit", D("10.00"), D(0)),
        ("accounts_receivable", D(0), D("10.00")),
    }


@st.composite
def lines(draw: st.DrawFn) -> tuple[str, Line]:
    currency = draw(st.sampled_from(["USD", "JPY", "BHD"]))
    amount = from_minor(draw(st.integers(-(10**9), 10**9)), currency)
    start = draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2060, 1, 1)))
    end = add_interval(start, draw(st.sampled_from(["P1W", "P1M", "P3M", "P1Y"]))) + timedelta(
        days=draw(st.integers(-6, 40))
    )
    return currency, Line(
        kind="recurring",
        description="l",
        service_period_start=start,
        service_period_end=end,
        unit_amount=amount,
        amount=amount,
    )


@given(data=lines())
def test_recognition_sums_exactly_and_nothing_stays_deferred(data: tuple[str, Line]) -> None:
    currency, line = data
    assert line.service_period_start is not None and line.service_period_end is not None
    pieces = line_schedule(line, currency, issue_date=line.service_period_start)
    assert sum(p.amount for p in pieces) == line.amount
    assert sum(p.days for p in pieces) == (line.service_period_end - line.service_period_start).days
    for entry in recognition_entries(pieces, currency):
        assert entry.total_debit == entry.total_credit
    # Deferred revenue of a finished period is zero (at the month end after its last day).
    assert deferred_balance(pieces, month_end(line.service_period_end - timedelta(days=1))) == 0
    # Month-end pieces agree with ratable-by-day recognition at every month boundary.
    running = D(0)
    for p in pieces:
        running += p.amount
        assert recognised_by_day(line, currency, p.service_end) == running
    # No piece has the opposite sign of the line.
    assert all(p.amount * line.amount >= 0 for p in pieces)


@given(
    minors=st.lists(st.integers(-(10**7), 10**7), min_size=1, max_size=6),
    country=st.sampled_from(["DE", "JP", "US"]),
    credit=st.integers(0, 10**7),
)
def test_every_journal_entry_balances(minors: list[int], country: str, credit: int) -> None:
    lines_ = [service_line(str(from_minor(m, "EUR")), date(2024, 1, 15), date(2024, 4, 15)) for m in minors]
    doc = assemble_document(
        lines_,
        subscription_id="s",
        currency="EUR",
        issue_date=date(2024, 1, 15),
        tax_table=load_tax_table(),
        tax_profile=TaxProfile(country=country),
        account_credit=from_minor(credit, "EUR"),
    ).document
    for entry in journal_on_issue(doc):
        assert entry.total_debit == entry.total_credit
        assert all((p.debit == 0) != (p.credit == 0) for p in entry.postings)


def test_billable_windows_with_overlapping_pauses() -> None:
    """Weekly cycle from Mon 2024-01-01; pauses [Jan 3, Jan 10) and [Jan 9, Jan 17) merge.

    Jan 1-2 billable (2/7), week of Jan 8 fully paused (skipped), Jan 17-21 (5/7) in the week of Jan 15.
    """
    windows = billable_service_windows(
        date(2024, 1, 1),
        date(2024, 1, 22),
        billing_anchor=date(2024, 1, 1),
        interval="P1W",
        pauses=[(date(2024, 1, 9), date(2024, 1, 17)), (date(2024, 1, 3), date(2024, 1, 10))],
    )
    assert [(w.service_start, w.service_end, str(w.fraction)) for w in windows] == [
        (date(2024, 1, 1), date(2024, 1, 3), "2/7"),
        (date(2024, 1, 17), date(2024, 1, 22), "5/7"),
    ]
