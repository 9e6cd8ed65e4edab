"""Tax table, per-line tax, document totals, account credit, due dates, the published contract."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.billing.domain.documents import (
    apply_account_credit,
    assemble_document,
    due_date,
    to_invoice_issued,
)
from services.billing.domain.model import Document, Line, TaxProfile
from services.billing.domain.tax import TaxError, TaxTable, load_tax_table, tax_line
from shared.contracts import events as ev
from shared.money import from_minor, round_half_up

D = Decimal
TAX = load_tax_table()
ON = date(2025, 3, 1)


def line(amount: str, kind: str = "one_off") -> Line:
    return Line(kind=kind, description="x", unit_amount=D(amount), amount=D(amount))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("country", "region", "rate"),
    [
        ("DE", None, "0.19"),
        ("FR", None, "0.20"),
        ("GB", None, "0.20"),
        ("JP", None, "0.10"),
        ("BH", None, "0.10"),
        ("US", "US-CA", "0.0725"),
        ("US", "CA", "0.0725"),
        ("US", "NY", "0.04"),
        ("US", None, "0"),
        ("US", "US-WA", "0"),
        ("de", None, "0.19"),
    ],
)
def test_rate_table(country: str, region: str | None, rate: str) -> None:
    assert TAX.rate_for(TaxProfile(country=country, region=region), ON) == D(rate)


def test_rate_history_and_exemption() -> None:
    """Germany's temporary 16% (Jul-Dec 2020) applies by issue date; exempt customers pay none."""
    de = TaxProfile(country="DE")
    assert TAX.rate_for(de, date(2020, 6, 30)) == D("0.19")
    assert TAX.rate_for(de, date(2020, 7, 1)) == D("0.16")
    assert TAX.rate_for(de, date(2021, 1, 1)) == D("0.19")
    assert TAX.rate_for(TaxProfile(country="DE", tax_exempt=True), ON) == 0
    assert TAX.rate_for(TaxProfile(tax_exempt=True), ON) == 0


def test_unknown_country_is_loud_unless_a_default_is_set() -> None:
    with pytest.raises(TaxError):
        TAX.rate_for(TaxProfile(country="ZZ"), ON)
    with pytest.raises(TaxError):
        TAX.rate_for(TaxProfile(), ON)
    lenient = TaxTable.model_validate({"default_rate": "0", "countries": {}})
    assert lenient.rate_for(TaxProfile(country="ZZ"), ON) == 0


def test_bad_tables_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text("countries: {DE: '1.5'}\n")
    with pytest.raises(TaxError):
        load_tax_table(bad)
    bad.write_text("countries: {DE: 0.19}\n")  # a YAML float: refused, rates are decimal strings
    with pytest.raises(TaxError):
        load_tax_table(bad)


def test_tax_is_per_line_half_up() -> None:
    """Two lines of 0.05 at 10%: 0.005 -> 0.01 each (half-up per line), tax 0.02 - not 0.01 on the sum."""
    doc = assemble_document(
        [line("0.05"), line("0.05")],
        subscription_id="s",
        currency="USD",
        issue_date=ON,
        tax_table=TAX,
        tax_profile=TaxProfile(country="JP"),
    )
    assert [x.tax_amount for x in doc.document.lines] == [D("0.01"), D("0.01")]
    assert doc.document.tax == D("0.02") and doc.document.total == D("0.12")


def test_credit_note_settlements() -> None:
    args = dict(
        subscription_id="s",
        currency="EUR",
        issue_date=ON,
        tax_table=TAX,
        tax_profile=TaxProfile(country="FR"),
    )
    refund = assemble_document([line("-10.00", "proration_credit")], settlement="refund", **args)  # type: ignore[arg-type]
    assert refund.document.document_type == "credit_note"
    assert (refund.document.total, refund.document.refund_amount) == (D("-12.00"), D("12.00"))
    assert refund.account_credit_after == 0
    kept = assemble_document([line("-10.00", "proration_credit")], account_credit=D("1.00"), **args)  # type: ignore[arg-type]
    assert kept.document.credit_to_account == D("12.00") and kept.account_credit_after == D("13.00")


def test_account_credit_and_due_dates() -> None:
    assert apply_account_credit(D("49.00"), D("60.00")) == (D("49.00"), D("0.00"), D("11.00"))
    assert apply_account_credit(D("49.00"), D("10.00")) == (D("10.00"), D("39.00"), D("0.00"))
    assert apply_account_credit(D("0.00"), D("10.00")) == (D("0.00"), D("0.00"), D("10.00"))
    assert due_date(ON, 0) == ON
    assert due_date(ON, 30) == date(2025, 3, 31)
    assert due_date(ON, 60) == date(2025, 4, 30)
    with pytest.raises(ValueError):
        due_date(ON, -1)
    with pytest.raises(ValueError):
        assemble_document(
            [line("1.00")],
            subscription_id="s",
            currency="USD",
            issue_date=ON,
            tax_table=TAX,
            tax_profile=TaxProfile(country="US"),
            account_credit=D("0.001"),
        )


def test_documents_refuse_inconsistent_totals() -> None:
    good = dict(
        document_type="invoice",
        subscription_id="s",
        currency="USD",
        issue_date=ON,
        due_date=ON,
        lines=(line("5.00"),),
        subtotal=D("5.00"),
        tax=D("0"),
        total=D("5.00"),
        amount_due=D("5.00"),
    )
    Document(**good)  # type: ignore[arg-type]
    for change in (
        {"total": D("5.01")},
        {"amount_due": D("4.00")},
        {"subtotal": D("4.00")},
        {"credits_applied": D("6.00"), "amount_due": D("-1.00")},
        {"refund_amount": D("1")},
    ):
        with pytest.raises(ValidationError):
            Document(**{**good, **change})  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Line(
            kind="recurring",
            description="x",
            unit_amount=D(1),
            amount=D(1),
            service_period_start=ON,
            service_period_end=ON,
        )


def test_contract_mapping() -> None:
    doc = assemble_document(
        [line("7.24", "recurring")],
        subscription_id="s",
        currency="USD",
        issue_date=ON,
        tax_table=TAX,
        tax_profile=TaxProfile(country="US", region="US-NY"),
        payment_terms_days=30,
    ).document
    issued = to_invoice_issued(doc, document_number="INV-00000001", customer=ev.Customer(customer_id="c"))
    assert issued.document_number == "INV-00000001" and issued.due_date == date(2025, 3, 31)
    assert issued.total == D("7.53") and issued.lines[0].tax_amount == D("0.29")  # 7.24 x 4% = 0.2896
    assert issued.model_dump(mode="json")["total"] == "7.53"


@given(
    currency=st.sampled_from(["USD", "JPY", "BHD", "EUR"]),
    country=st.sampled_from(["DE", "FR", "JP", "BH", "US"]),
    minors=st.lists(st.integers(-(10**8), 10**8), min_size=1, max_size=12),
    credit=st.integers(0, 10**8),
)
def test_every_document_total_is_its_lines_plus_tax(
    currency: str, country: str, minors: list[int], credit: int
) -> None:
    lines = [line(str(from_minor(m, currency))) for m in minors]
    available = from_minor(credit, currency)
    out = assemble_document(
        lines,
        subscription_id="s",
        currency=currency,
        issue_date=ON,
        tax_table=TAX,
        tax_profile=TaxProfile(country=country),
        account_credit=available,
    )
    doc = out.document
    assert doc.total == sum(x.amount for x in doc.lines) + sum(x.tax_amount for x in doc.lines)
    rate = TAX.rate_for(TaxProfile(country=country), ON)
    assert all(x.tax_amount == round_half_up(x.amount * rate, currency) for x in doc.lines)
    if doc.document_type == "invoice":
        assert doc.amount_due == max(D(0), doc.total - available)
        assert out.account_credit_after == available - doc.credits_applied
    else:
        assert out.account_credit_after == available - doc.total
    assert out.account_credit_after >= 0
    assert tax_line(lines[0], rate, currency).tax_amount == doc.lines[0].tax_amount
