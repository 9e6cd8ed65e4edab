"""Previews and revenue schedules for operators (``som billing preview``, ``som revenue schedule``).

A preview runs the worker's own step (:meth:`BillingHandlers.step`, i.e. the domain's
``apply``) on the stored billing state and account credit, and throws the result away:
nothing is numbered, stored or published. Given the same date it shows exactly what the
worker will issue for that change.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from services.billing import store
from services.billing.domain import (
    AddAddon,
    BillingCommand,
    BillingContext,
    Cancel,
    ChangePlan,
    ChangeQuantity,
    Document,
    InvoicePending,
    Pause,
    RemoveAddon,
    Renew,
    Resume,
    revenue_schedule,
    to_invoice_issued,
)
from services.billing.domain.engine import renewals_due
from services.billing.domain.model import Timing
from services.billing.handlers import BillingHandlers
from services.billing.journal import RECOGNITION_KIND
from services.billing.lifecycle_map import Run
from shared.contracts.commands import parse_timing

CHANGES = (
    "change_plan",
    "change_quantity",
    "add_addon",
    "remove_addon",
    "cancel",
    "pause",
    "resume",
    "renew",
    "invoice_pending",
)
PREVIEW_NUMBER = "(preview)"


class PreviewError(ValueError):
    """The change cannot be previewed as given (missing option, unknown subscription ...)."""

    def __init__(self, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found


def _timing(value: str | None) -> Timing | None:
    if value is None:
        return None
    try:
        return Timing(parse_timing(value))
    except ValueError:
        raise PreviewError(f"timing must be immediate or period_end (end_of_term), not {value!r}") from None


def command_for(
    change: str, on: date, *, plan: str | None = None, quantity: int | None = None, timing: str | None = None
) -> BillingCommand:
    """The billing command of an operator's change, as the worker builds it from the lifecycle's event.

    Without ``timing`` the billing policy decides (upgrades now, downgrades at the term end),
    as the lifecycle's default does.
    """
    t = _timing(timing)
    if change == "change_plan":
        if not plan:
            raise PreviewError("change_plan needs --plan")
        return ChangePlan(on=on, plan_id=plan, quantity=quantity, timing=t)
    if change == "change_quantity":
        if quantity is None:
            raise PreviewError("change_quantity needs --quantity")
        return ChangeQuantity(on=on, quantity=quantity, timing=t)
    if change == "add_addon":
        if not plan:
            raise PreviewError("add_addon needs --plan (the add-on)")
        return AddAddon(on=on, plan_id=plan, quantity=quantity or 1, timing=t)
    if change == "remove_addon":
        if not plan:
            raise PreviewError("remove_addon needs --plan (the add-on)")
        return RemoveAddon(on=on, item_id=plan, timing=t)
    if change == "cancel":
        return Cancel(on=on, timing=t)
    if change == "pause":
        return Pause(on=on)
    if change == "resume":
        return Resume(on=on)
    if change == "renew":
        return Renew(on=on)
    if change == "invoice_pending":
        return InvoicePending(on=on)
    raise PreviewError(f"unknown change {change!r}: one of {', '.join(CHANGES)}")


@dataclass
class Preview:
    """What a change would produce."""

    subscription_id: str
    command: dict[str, Any]
    documents: list[dict[str, Any]] = field(default_factory=list)
    pending_lines: list[dict[str, Any]] = field(default_factory=list)
    account_credit_before: Decimal = Decimal(0)
    account_credit_after: Decimal = Decimal(0)
    timing: str | None = None
    effective_on: date | None = None
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form (amounts as strings)."""
        return {
            "subscription_id": self.subscription_id,
            "command": self.command,
            "documents": self.documents,
            "pending_lines": self.pending_lines,
            "account_credit_before": str(self.account_credit_before),
            "account_credit_after": str(self.account_credit_after),
            "timing": self.timing,
            "effective_on": self.effective_on.isoformat() if self.effective_on else None,
            "notes": self.notes,
        }


async def preview_change(
    conn: asyncpg.Connection | asyncpg.Pool,
    ctx: BillingContext,
    subscription_id: str,
    command: BillingCommand,
) -> Preview:
    """Run ``command`` through the worker's step on the stored state; nothing is persisted."""
    rec = await store.load(conn, subscription_id)
    if rec is None or rec.state is None:
        raise PreviewError(f"billing has no state for subscription {subscription_id}", not_found=True)
    # The customer's balance, as the worker reads it for this subscription's next change.
    rec.account_credit = await store.customer_credit(
        conn, rec.snapshot.customer.customer_id, rec.snapshot.currency.upper()
    )
    handlers = BillingHandlers(ctx)
    work = copy.copy(rec)
    result = Preview(
        subscription_id=subscription_id,
        command=command.model_dump(mode="json"),
        account_credit_before=rec.account_credit,
        account_credit_after=rec.account_credit,
    )
    # Renewals due between the last one billed and the change's date run first, as the worker
    # would have run them (a renewal fires at midnight, before a change dated that day).
    renewal_docs: list[Document] = []
    include_on = not isinstance(command, Renew)
    while due := renewals_due(work.state, command.on, include_on=include_on):
        # One at a time: a renewal may apply a scheduled interval change that moves the next date.
        day = due[0]
        renewed = handlers.step(work, Run(Renew(on=day), "renewal"))
        if renewed is None:
            break
        out, _ = renewed
        work.state, work.account_credit = out.state, out.account_credit_after
        renewal_docs.extend(out.documents)
        result.notes.append(f"renewal on {day} runs first")
    done = handlers.step(work, Run(command, "preview"))
    result.documents = [
        to_invoice_issued(
            d, document_number=PREVIEW_NUMBER, customer=rec.snapshot.customer, test=rec.snapshot.test
        ).model_dump(mode="json")
        for d in renewal_docs
    ]
    result.account_credit_after = work.account_credit
    if done is None:
        result.notes.append(
            "billing is not running for this subscription, or nothing changes: nothing billed"
        )
        return result
    outcome, _ = done
    result.documents += [
        to_invoice_issued(
            d, document_number=PREVIEW_NUMBER, customer=rec.snapshot.customer, test=rec.snapshot.test
        ).model_dump(mode="json")
        for d in outcome.documents
    ]
    result.pending_lines = [line.model_dump(mode="json") for line in outcome.new_pending]
    result.account_credit_after = outcome.account_credit_after
    result.timing = outcome.timing
    result.effective_on = outcome.effective_on
    result.notes += list(outcome.notes)
    return result


async def revenue_rows(conn: asyncpg.Connection | asyncpg.Pool, subscription_id: str) -> dict[str, Any]:
    """The revenue schedule of every document of a subscription, with what has been posted."""
    docs = await store.documents_of(conn, subscription_id)
    if not docs:
        raise PreviewError(f"no documents for subscription {subscription_id}", not_found=True)
    timers = await conn.fetch(
        "SELECT kind, due_at, fired_at FROM timekeeping.timers WHERE subscription_id = $1 AND kind LIKE $2 "
        "AND cancelled_at IS NULL",
        subscription_id,
        f"{RECOGNITION_KIND}:%",
    )
    posted = {(t["kind"].split(":", 1)[1], t["due_at"].date()): t["fired_at"] is not None for t in timers}
    pieces: list[dict[str, Any]] = []
    currency = docs[0].currency
    for d in docs:
        if d.document is None:  # written before the engine: no domain document to schedule
            continue
        for p in revenue_schedule(d.document.lines, d.currency, issue_date=d.issue_date):
            pieces.append(
                {
                    "month_end": p.month_end.isoformat(),
                    "document_number": d.document_number,
                    "document_type": d.document_type,
                    "line": p.line_index,
                    "description": p.description,
                    "service_start": p.service_start.isoformat(),
                    "service_end": p.service_end.isoformat(),
                    "days": p.days,
                    "amount": str(p.amount),
                    "currency": d.currency,
                    "posted": posted.get((d.document_number, p.month_end + timedelta(days=1)), False),
                }
            )
    pieces.sort(key=lambda r: (r["month_end"], r["document_number"], r["line"]))
    months: dict[str, dict[str, Any]] = {}
    for r in pieces:
        m = months.setdefault(
            r["month_end"], {"month_end": r["month_end"], "amount": Decimal(0), "posted": True}
        )
        m["amount"] += Decimal(r["amount"])
        m["posted"] = m["posted"] and r["posted"]
    total = sum((Decimal(r["amount"]) for r in pieces), Decimal(0))
    return {
        "subscription_id": subscription_id,
        "currency": currency,
        "pieces": pieces,
        "months": [{**m, "amount": str(m["amount"])} for m in months.values()],
        "total": str(total),
    }
