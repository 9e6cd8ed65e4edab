"""``som billing`` and ``som revenue``: invoice previews, documents and revenue schedules."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from services.billing import views
from som.commands import replenishment
from som.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    UserError,
    console,
    db_pool,
    err,
    resolved_settings,
    run,
)

app = typer.Typer(help="Billing: preview what a change would invoice, list documents.", no_args_is_help=True)
revenue_app = typer.Typer(help="Revenue recognition (IFRS 15): schedules by month end.", no_args_is_help=True)
app.add_typer(replenishment.app, name="replenishment")


def _context() -> Any:
    from services.billing.app import billing_context
    from shared.catalog import cached_catalog

    settings = resolved_settings(require=False)
    return billing_context(
        cached_catalog(str(settings.catalog_path) if settings.catalog_path else None),
        settings.charge_policy_path,
    )


def _date(value: str, option: str = "--on") -> date:
    try:
        return date.fromisoformat(value[:10])
    except ValueError as exc:
        raise UserError(f"{option} wants an ISO date (2025-03-11), not {value!r}", EXIT_USAGE) from exc


@app.command("preview")
def billing_preview(
    subscription_id: Annotated[str, typer.Argument(help="Internal subscription id.")],
    change: Annotated[
        str,
        typer.Option(
            "--change",
            help="change_plan, change_quantity, add_addon, remove_addon, cancel, pause, resume, renew, "
            "invoice_pending",
        ),
    ],
    on: Annotated[str, typer.Option("--on", help="Business date the change takes effect (ISO date).")],
    plan: Annotated[
        str | None, typer.Option("--plan", help="Target plan (change_plan) or add-on plan.")
    ] = None,
    quantity: Annotated[int | None, typer.Option("--quantity", min=1, help="New quantity.")] = None,
    timing: Annotated[
        str | None,
        typer.Option(
            "--timing", help="immediate or period_end (end_of_term accepted); default: the billing policy"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show the documents a change would produce on a date, without changing anything."""
    from services.billing.preview import Preview, PreviewError, command_for, preview_change
    from shared.messaging.errors import PermanentError

    settings = resolved_settings()
    try:
        command = command_for(change, _date(on), plan=plan, quantity=quantity, timing=timing)
    except PreviewError as exc:
        raise UserError(str(exc), EXIT_USAGE) from exc

    async def go() -> Preview:
        async with db_pool(settings) as pool:
            try:
                return await preview_change(pool, _context(), subscription_id, command)
            except PreviewError as exc:
                raise UserError(str(exc), EXIT_NOT_FOUND if exc.not_found else EXIT_USAGE) from exc
            except PermanentError as exc:  # the domain refuses the change in this state
                raise UserError(str(exc), EXIT_NOT_FOUND) from exc

    result = run(go())
    if as_json:
        console.print_json(data=result.as_json())
        return
    console.print(
        f"[bold]{change}[/bold] of {subscription_id} on {command.on}"
        + (f" ({result.timing}, effective {result.effective_on})" if result.timing else "")
    )
    if not result.documents:
        console.print("no document now")
    for doc in result.documents:
        t = Table(
            "kind",
            "description",
            "service period",
            "amount",
            "tax",
            title=f"{doc['document_type']} {doc['issue_date']} (due {doc['due_date']})",
        )
        for line in doc["lines"]:
            period = (
                f"{line['service_period_start']} .. {line['service_period_end']}"
                if line.get("service_period_start")
                else ""
            )
            t.add_row(line["kind"], line["description"], period, line["amount"], line["tax_amount"])
        t.add_section()
        t.add_row("", "subtotal", "", doc["subtotal"], doc["tax"])
        t.add_row("", "total", "", doc["total"], doc["currency"])
        if doc["document_type"] == "invoice":
            t.add_row("", "credits applied", "", doc["credits_applied"], "")
            t.add_row("", "amount due", "", doc["amount_due"], "")
        console.print(t)
    if result.pending_lines:
        t = Table("kind", "description", "amount", title="pending adjustments (on the next invoice)")
        for line in result.pending_lines:
            t.add_row(line["kind"], line["description"], line["amount"])
        console.print(t)
    console.print(f"account credit {result.account_credit_before} -> {result.account_credit_after}")
    for note in result.notes:
        console.print(f"note: {note}")


@app.command("documents")
def billing_documents(
    subscription_id: Annotated[str, typer.Argument(help="Internal subscription id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Invoices and credit notes of a subscription, with their collection status."""
    settings = resolved_settings()

    async def go() -> list[dict[str, Any]]:
        async with db_pool(settings) as pool:
            rows = await views.documents(pool, subscription_id)
        if not rows:
            raise UserError(f"no documents for subscription {subscription_id}", EXIT_NOT_FOUND)
        return [
            {k: (str(v) if v is not None and not isinstance(v, dict | int) else v) for k, v in r.items()}
            for r in rows
        ]

    rows = run(go())
    if as_json:
        console.print_json(data=rows)
        return
    t = Table(
        "number", "type", "reason", "issued", "due", "total", "amount due", "status", "attempts", "paid"
    )
    for r in rows:
        t.add_row(
            r["document_number"],
            r["document_type"],
            r["reason"] or "",
            r["issue_date"],
            r["due_date"],
            f"{r['total']} {r['currency']}",
            r["amount_due"],
            r["status"],
            str(r["attempts"]),
            r["paid_on"] or "",
        )
    console.print(t)


class ExportFormat(StrEnum):
    """Output formats of ``som billing export``."""

    csv = "csv"
    jsonl = "jsonl"


@app.command("export")
def billing_export(
    start: Annotated[str, typer.Option("--from", help="First issue/entry date included (ISO date).")],
    end: Annotated[str, typer.Option("--to", help="Last issue/entry date included (ISO date).")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="csv or jsonl.")] = ExportFormat.csv,
    output: Annotated[Path | None, typer.Option("--output", help="Write here instead of stdout.")] = None,
    subscription_id: Annotated[
        str | None, typer.Option("--subscription", help="Only this subscription.")
    ] = None,
    include_test: Annotated[
        bool, typer.Option("--include-test", help="Include documents and entries of test clocks.")
    ] = False,
) -> None:
    """Invoices, credit notes and posted journal entries for an AR or accounting import.

    Totals per currency go to stderr (and, in jsonl, as `totals` records): the documents' totals must
    equal the receivables of their journal issue entries, and debits equal credits; exit 1 if not.
    """
    import sys

    from services.billing import export

    first, last = _date(start, "--from"), _date(end, "--to")
    if last < first:
        raise UserError("--to is before --from", EXIT_USAGE)
    settings = resolved_settings()

    async def go() -> export.Export:
        async with db_pool(settings) as pool:
            docs = await views.export_documents(
                pool, first, last, subscription_id=subscription_id, include_test=include_test
            )
            entries = await views.export_journal(
                pool,
                f"{settings.topic_namespace}billing",
                first,
                last,
                subscription_id=subscription_id,
                include_test=include_test,
            )
        return export.build(first, last, docs, entries)

    result = run(go())
    text = export.to_csv(result) if fmt is ExportFormat.csv else export.to_jsonl(result)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
    table = Table("currency", "invoices", "credit notes", "documents", "AR issued", "debit", "credit", "ties")
    for t in result.totals.values():
        row = t.as_row()
        table.add_row(
            t.currency,
            f"{t.invoices}: {row['invoices_total']}",
            f"{t.credit_notes}: {row['credit_notes_total']}",
            row["documents_total"],
            row["receivables_issued"],
            row["journal_debit"],
            row["journal_credit"],
            "yes" if t.ties else "NO",
        )
    err.print(table)
    if not result.ties:
        raise UserError("the export does not tie to the journal (see the totals)", EXIT_FAILED)


@app.command("balance")
def billing_balance(
    customer_id: Annotated[str, typer.Argument(help="Customer id (as in the subscription's customer).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The customer's account credit per currency, with every movement (credit notes, credit applied, refunds)."""
    settings = resolved_settings()

    async def go() -> list[dict[str, Any]]:
        async with db_pool(settings) as pool:
            rows = await views.customer_balance(pool, customer_id)
        if not rows:
            raise UserError(f"no account credit recorded for customer {customer_id}", EXIT_NOT_FOUND)
        return [
            {
                "currency": r["currency"],
                "balance": str(r["balance"]),
                "movements": [
                    {k: (str(v) if v is not None else None) for k, v in m.items()} for m in r["movements"]
                ],
            }
            for r in rows
        ]

    rows = run(go())
    if as_json:
        console.print_json(data={"customer_id": customer_id, "balances": rows})
        return
    for r in rows:
        t = Table(
            "date",
            "movement",
            "amount",
            "balance",
            "subscription",
            "document",
            title=f"account credit of {customer_id}: {r['balance']} {r['currency']}",
        )
        for m in r["movements"]:
            t.add_row(
                m["business_date"] or "",
                m["kind"],
                m["amount"],
                m["balance_after"],
                m["subscription_id"] or "",
                m["document_number"] or "",
            )
        console.print(t)


@revenue_app.command("schedule")
def revenue_schedule(
    subscription_id: Annotated[str, typer.Argument(help="Internal subscription id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Month-end revenue recognition of every document of a subscription, and what is posted."""
    from services.billing.preview import PreviewError, revenue_rows

    settings = resolved_settings()

    async def go() -> dict[str, Any]:
        async with db_pool(settings) as pool:
            try:
                return await revenue_rows(pool, subscription_id)
            except PreviewError as exc:
                raise UserError(str(exc), EXIT_NOT_FOUND) from exc

    doc = run(go())
    if as_json:
        console.print_json(data=doc)
        return
    t = Table(
        "month end",
        "document",
        "line",
        "service days",
        "days",
        "amount",
        "posted",
        title=f"revenue schedule of {subscription_id} ({doc['currency']})",
    )
    by_month: dict[str, list[dict[str, Any]]] = {}
    for p in doc["pieces"]:
        by_month.setdefault(p["month_end"], []).append(p)
    months = {m["month_end"]: m for m in doc["months"]}
    for month, pieces in by_month.items():
        for p in pieces:
            t.add_row(
                month,
                p["document_number"],
                str(p["line"]),
                f"{p['service_start']} to {p['service_end']}",
                str(p["days"]),
                p["amount"],
                "yes" if p["posted"] else "no",
            )
        t.add_row("", "", "", "month total", "", months[month]["amount"], "", end_section=True)
    t.add_row("total", "", "", "", "", doc["total"], "")
    console.print(t)
