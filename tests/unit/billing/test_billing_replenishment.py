"""Replenishment cycles (pure): tiers sum exactly, caps hold, skip/delay never bill a cycle twice."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.billing.domain.replenishment import (
    PriceListEntry,
    ReplenishmentState,
    capped,
    delay_next,
    graduated,
    hold,
    invoice_lines,
    release,
    run_cycle,
    skip_next,
    start,
)
from shared.catalog import Plan, PlanPrice
from shared.catalog.replenishment import ReplenishmentTerms, VolumeTier, cadence_days

START = date(2026, 1, 5)
TIERS = (
    VolumeTier(up_to=10, unit_amount=Decimal("4.00")),
    VolumeTier(up_to=50, unit_amount=Decimal("3.50")),
    VolumeTier(up_to=None, unit_amount=Decimal("2.99")),
)


def plan(
    terms: ReplenishmentTerms, *, prices: tuple[tuple[date, str], ...] = ((date(2025, 1, 1), "12.00"),)
) -> Plan:
    return Plan(
        id="coffee-beans",
        name="Coffee beans 1 kg",
        product="coffee",
        prices=tuple(
            PlanPrice(currency="EUR", billing_interval="P1M", unit_amount=Decimal(a), effective_from=d)
            for d, a in prices
        ),
        replenishment=terms,
    )


def state(terms: ReplenishmentTerms, quantity: int = 2) -> ReplenishmentState:
    return start(
        subscription_id="sub-1",
        customer_id="c-1",
        plan_id="coffee-beans",
        terms=terms,
        currency="eur",
        billing_interval="P1M",
        quantity=quantity,
        first_due=START,
    )


def at(d: date) -> datetime:
    return datetime.combine(d, time(), tzinfo=UTC)


def test_cadence_days() -> None:
    assert cadence_days("P4W") == 28
    assert cadence_days("p28d") == 28
    with pytest.raises(ValueError):
        cadence_days("P1M")


def test_tiers_must_end_open() -> None:
    with pytest.raises(ValueError):
        ReplenishmentTerms(sku="x", cadence="P4W", pricing="tiers", tiers=TIERS[:2])


def test_graduated_worked_example() -> None:
    # 60 units: 10 x 4.00 + 40 x 3.50 + 10 x 2.99 = 40.00 + 140.00 + 29.90 = 209.90
    lines = graduated(60, TIERS, "EUR")
    assert [(p.quantity, p.amount) for p in lines] == [
        (10, Decimal("40.00")),
        (40, Decimal("140.00")),
        (10, Decimal("29.90")),
    ]
    assert sum(p.amount for p in lines) == Decimal("209.90")


@given(st.integers(min_value=0, max_value=500))
def test_tiers_sum_exactly(quantity: int) -> None:
    lines = graduated(quantity, TIERS, "EUR")
    assert sum(p.quantity for p in lines) == quantity
    for p in lines:
        assert p.amount == p.unit_amount * p.quantity
        assert p.amount == p.amount.quantize(Decimal("0.01"))
    # Graduated: never more than every unit at the first tier's price, never less than at the last's.
    total = sum((p.amount for p in lines), Decimal(0))
    assert Decimal("2.99") * quantity <= total <= Decimal("4.00") * quantity


money = st.integers(min_value=1, max_value=10_000_000).map(lambda m: Decimal(m).scaleb(-2))


@given(money, money, st.integers(min_value=0, max_value=100).map(Decimal))
def test_cap_holds(previous: Decimal, proposed: Decimal, pct: Decimal) -> None:
    held = capped(previous, proposed, pct, "EUR")
    assert abs(held - previous) <= previous * pct / 100
    assert held == held.quantize(Decimal("0.01"))
    if abs(proposed - previous) <= previous * pct / 100:
        assert held == proposed


def test_cap_worked_example() -> None:
    # 10 % of 12.00 is 1.20: a list price of 15.00 is held at 13.20, one of 9.00 at 10.80.
    assert capped(Decimal("12.00"), Decimal("15.00"), Decimal(10), "EUR") == Decimal("13.20")
    assert capped(Decimal("12.00"), Decimal("9.00"), Decimal(10), "EUR") == Decimal("10.80")
    # JPY has no minor unit: 5 % of 999 is 49.95; the bounds round inwards to 950 and 1048.
    assert capped(Decimal(999), Decimal(2000), Decimal(5), "JPY") == Decimal(1048)
    assert capped(Decimal(999), Decimal(1), Decimal(5), "JPY") == Decimal(950)


def test_price_list_with_cap_across_cycles() -> None:
    terms = ReplenishmentTerms(
        sku="BEAN-1KG", cadence="P4W", pricing="price_list", max_change_percent=Decimal(10)
    )
    p = plan(terms)
    s = state(terms)
    # Cycle 1: no list price yet: the catalog price 12.00.
    one = run_cycle(s, p, terms, due=START, at=at(START), stock=None)
    assert one.status == "delivered" and one.lines[0].unit_amount == Decimal("12.00")
    assert one.total == Decimal("24.00")
    # A list price of 15.00 before cycle 2: capped at 13.20; cycle 3 may move another 10 %: 14.52.
    prices = [PriceListEntry("BEAN-1KG", "EUR", Decimal("15.00"), at(START + timedelta(days=3)))]
    two = run_cycle(
        one.state,
        p,
        terms,
        due=START + timedelta(days=28),
        at=at(START + timedelta(days=28)),
        stock=None,
        price_list=prices,
    )
    assert two.lines[0].unit_amount == Decimal("13.20")
    assert "capped at 10% change from 12.00" in two.lines[0].basis
    three = run_cycle(
        two.state,
        p,
        terms,
        due=START + timedelta(days=56),
        at=at(START + timedelta(days=56)),
        stock=None,
        price_list=prices,
    )
    assert three.lines[0].unit_amount == Decimal("14.52")
    lines = invoice_lines(three, p, terms)
    assert lines[0].price_basis is not None and lines[0].price_basis.startswith("price list from")


def test_catalog_version_in_force_on_the_due_date() -> None:
    terms = ReplenishmentTerms(sku="BEAN-1KG", cadence="P28D")
    p = plan(terms, prices=((date(2025, 1, 1), "12.00"), (date(2026, 2, 1), "12.50")))
    one = run_cycle(state(terms), p, terms, due=START, at=at(START), stock=None)
    two = run_cycle(one.state, p, terms, due=one.state.next_due, at=at(one.state.next_due), stock=None)
    assert one.lines[0].basis == "catalog price from 2025-01-01"
    assert (two.lines[0].unit_amount, two.lines[0].basis) == (
        Decimal("12.50"),
        "catalog price from 2026-02-01",
    )


def test_shortage_delay_and_partial() -> None:
    delay = ReplenishmentTerms(sku="B", cadence="P4W", shortage="delay", delay_days=5)
    out = run_cycle(state(delay, quantity=3), plan(delay), delay, due=START, at=at(START), stock=2)
    assert out.status == "delayed" and out.lines == () and out.state.next_due == START + timedelta(days=5)
    partial = ReplenishmentTerms(sku="B", cadence="P4W", shortage="partial")
    out = run_cycle(state(partial, quantity=3), plan(partial), partial, due=START, at=at(START), stock=2)
    assert (out.status, out.quantity_delivered, out.total) == ("partial", 2, Decimal("24.00"))
    assert out.state.next_due == START + timedelta(days=28)
    none = run_cycle(state(partial, quantity=3), plan(partial), partial, due=START, at=at(START), stock=0)
    assert none.status == "delayed"


action = st.one_of(
    st.just(("run", 0)),
    st.just(("skip", 0)),
    st.tuples(st.just("delay"), st.integers(min_value=1, max_value=40)),
    st.just(("stale", 0)),
    st.just(("replay", 0)),
    st.just(("hold", 0)),
    st.tuples(st.just("release"), st.integers(min_value=0, max_value=60)),
)


@given(st.lists(action, max_size=30), st.sampled_from([None, 0, 1, 5]))
def test_skip_delay_and_pause_never_bill_twice(actions: list[tuple[str, int]], stock: int | None) -> None:
    terms = ReplenishmentTerms(sku="B", cadence="P4W", shortage="partial")
    p = plan(terms)
    s = state(terms, quantity=2)
    billed: list[date] = []
    timers = [s.next_due]  # every timer ever set, fired in any order, any number of times
    for kind, days in actions:
        if kind == "skip":
            s = skip_next(s, terms)
        elif kind == "delay":
            s = delay_next(s, days)
        elif kind == "hold":
            s = hold(s)
        elif kind == "release" and s.held:
            s = release(s, START + timedelta(days=days))
        due = {"run": s.next_due, "stale": timers[0], "replay": timers[-1]}.get(kind)
        if due is None:
            timers.append(s.next_due)
            continue
        out = run_cycle(s, p, terms, due=due, at=at(due), stock=stock)
        if out.lines:
            assert not s.held  # nothing is delivered or billed while paused
            billed.append(due)
        s = out.state
        timers.append(s.next_due)
    assert len(billed) == len(set(billed))
    assert tuple(billed) == s.billed
    assert not set(s.billed) & set(s.skipped)
    assert sorted(billed) == billed


def test_pause_holds_the_cycle_and_resume_does_not_make_up_missed_ones() -> None:
    terms = ReplenishmentTerms(sku="B", cadence="P4W")
    held = hold(state(terms))
    assert run_cycle(held, plan(terms), terms, due=START, at=at(START), stock=None).status == "stale"
    # Resumed 10 days after the due date: the cycle runs on the resume day, once.
    back = release(held, START + timedelta(days=10))
    assert (back.held, back.next_due) == (False, START + timedelta(days=10))
    assert release(hold(state(terms)), START - timedelta(days=3)).next_due == START  # never earlier
